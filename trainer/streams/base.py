"""Window data: the unit the trainer works on (one camera, one retraining window, object crops).

Arrays, not objects, so a window of thousands of crops moves through numpy/torch without copies and
saves as one compressed .npz (atomically, so a reader never sees half a file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import atomic_write

# The original's six object classes, in label order: the default of a deployment's `classes`.
CLASSES: tuple[str, ...] = ("person", "car", "truck", "bus", "bicycle", "motorcycle")
NUM_CLASSES = len(CLASSES)
UNLABELLED = -1

_ARRAYS = ("images", "labels", "track_ids", "frame_index", "timestamps")


class WindowDataError(ValueError):
    """A window file or array set is malformed (bad shapes, dtypes, labels)."""


@dataclass
class WindowData:
    """Object crops of one camera over one window. All arrays share the first dimension N.

    images [N,H,W,3] uint8; labels [N] int64, a class index >= 0 or -1 (unlabelled); track_ids [N] int64
    (an object keeps its id over consecutive frames); frame_index [N] int64 (absolute frame number);
    timestamps [N] float64 seconds.
    """

    images: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray
    frame_index: np.ndarray
    timestamps: np.ndarray
    camera: str = ""
    window: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    # The class count labels index into, where the maker knows it (the deployment's `classes`): checked and
    # carried along (take, with_labels, save/load). None: only -1 and above are checked; the model's head
    # checks the rest when training (trainer/fit.py).
    num_classes: int | None = None

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.track_ids = np.asarray(self.track_ids, dtype=np.int64)
        self.frame_index = np.asarray(self.frame_index, dtype=np.int64)
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        self.validate()

    # ---- checks -------------------------------------------------------------------------------
    def validate(self) -> None:
        im = self.images
        if im.dtype != np.uint8 or im.ndim != 4 or im.shape[-1] != 3:
            raise WindowDataError(f"images must be uint8 [N,H,W,3], got {im.dtype} {list(im.shape)}")
        n = im.shape[0]
        for name in _ARRAYS[1:]:
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise WindowDataError(f"{name} must have shape [{n}], got {list(arr.shape)}")
        check_labels(self.labels, self.num_classes, WindowDataError)

    # ---- views --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1]) if len(self) else 0

    @property
    def labelled_mask(self) -> np.ndarray:
        return self.labels >= 0

    @property
    def num_labelled(self) -> int:
        return int(self.labelled_mask.sum())

    def take(self, index: np.ndarray) -> WindowData:
        """A new window with the rows in `index` (bool mask or integer indices)."""
        return WindowData(
            images=self.images[index], labels=self.labels[index], track_ids=self.track_ids[index],
            frame_index=self.frame_index[index], timestamps=self.timestamps[index],
            camera=self.camera, window=self.window, meta=dict(self.meta), num_classes=self.num_classes,
        )

    def labelled(self) -> WindowData:
        return self.take(self.labelled_mask)

    def with_labels(self, labels: np.ndarray) -> WindowData:
        """Same crops, new labels (e.g. the golden model's)."""
        out = self.take(np.arange(len(self)))
        out.labels = np.asarray(labels, dtype=np.int64)
        out.validate()
        return out

    def split(self, held_out_fraction: float = 0.2, seed: int = 0) -> tuple[WindowData, WindowData]:
        """(train, held_out), split by track so no object appears on both sides (consecutive frames of
        one object are near-duplicates; splitting by crop would leak the test set into training).

        A track's side is a hash of its id and the seed, so the split of a window agrees with the split
        of any part of it: a model trained on the first part of a window is never tested on its own
        training objects once the whole window is in. Tiny sets keep both sides non-empty. A crop of unknown
        track (-1: captured server-side) is an object of its own (_object_keys)."""
        if not 0.0 < held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
        objects = self._object_keys()
        tracks = np.unique(objects)
        draw = _track_uniform(tracks, seed)
        held_tracks = tracks[draw < held_out_fraction]
        if len(tracks) > 1 and len(held_tracks) in (0, len(tracks)):
            n_held = min(len(tracks) - 1, max(1, round(held_out_fraction * len(tracks))))
            held_tracks = tracks[np.argsort(draw)[:n_held]]
        held = np.isin(objects, held_tracks)
        return self.take(~held), self.take(held)

    def _object_keys(self) -> np.ndarray:
        """Each crop's object for the split: its track id; where unknown (< 0), the crop itself, keyed
        (negative, so apart from every track) by its frame and its place among that frame's crops, which
        stay the same in any part of the window that holds the frame."""
        keys = self.track_ids.copy()
        unknown = keys < 0
        if not unknown.any():
            return keys
        frames = self.frame_index[unknown]
        order = np.argsort(frames, kind="stable")
        ordered = frames[order]
        starts = np.r_[0, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1]
        place = np.empty(len(frames), dtype=np.int64)
        place[order] = np.arange(len(frames)) - np.repeat(starts, np.diff(np.r_[starts, len(frames)]))
        keys[unknown] = -1 - ((frames * 1024 + place) % (1 << 62))
        return keys

    def subsample(self, fraction: float, seed: int = 0) -> WindowData:
        """A uniform random sample of `fraction` of the crops (at least one), order preserved."""
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if fraction >= 1.0 or len(self) == 0:
            return self
        k = max(1, round(fraction * len(self)))
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=k, replace=False))
        return self.take(idx)

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], compress: bool = False) -> Path:
        """Write atomically as .npz (uncompressed by default: crops compress poorly and slowly)."""
        import json

        arrays = {name: getattr(self, name) for name in _ARRAYS}
        header_fields: dict[str, Any] = {"camera": self.camera, "window": self.window, "meta": self.meta}
        if self.num_classes is not None:  # (absent otherwise: files as before)
            header_fields["num_classes"] = self.num_classes
        header = json.dumps(header_fields)
        saver = np.savez_compressed if compress else np.savez

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                saver(fh, header=np.array(header), **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WindowData:
        """Read a window file; any way it can be wrong (missing, empty, truncated, not an .npz, arrays
        missing or of the wrong shapes, dtypes or labels) is a WindowDataError naming the file."""
        import json
        import zipfile
        import zlib

        p = Path(path)
        if not p.is_file():
            raise WindowDataError(f"window file not found: {p}")
        try:
            with open(p, "rb") as fh:  # ours to close (np.load leaks its own on a broken zip)
                npz = np.load(fh, allow_pickle=False)
                if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy
                    raise WindowDataError(f"a single {type(npz).__name__}, not an .npz of arrays")
                missing = [n for n in _ARRAYS if n not in npz.files]
                if missing:
                    raise WindowDataError(f"missing arrays {missing} (has {sorted(npz.files)})")
                arrays = {n: npz[n] for n in _ARRAYS}
                _check_dtypes(arrays)
                header = json.loads(str(npz["header"])) if "header" in npz.files else {}
            if not isinstance(header, dict):
                raise WindowDataError(f"its header is a {type(header).__name__}, not an object")
            num_classes = header.get("num_classes")
            return cls(**arrays, camera=str(header.get("camera", "")), window=int(header.get("window", 0)),
                       meta=dict(header.get("meta", {})),
                       num_classes=None if num_classes is None else int(num_classes))
        except WindowDataError as exc:
            raise WindowDataError(f"{p}: {exc}") from exc
        except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, TypeError) as exc:
            raise WindowDataError(f"{p}: not a readable .npz window file ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def empty(cls, image_size: int = 64, camera: str = "", window: int = 0) -> WindowData:
        return cls(np.zeros((0, image_size, image_size, 3), np.uint8), np.zeros(0, np.int64),
                   np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), camera, window)


def check_labels(labels: np.ndarray, num_classes: int | None, error: type[Exception] = ValueError) -> None:
    """Labels are class indices in [0, num_classes) or -1 (unlabelled); without a count, -1 and above."""
    if not len(labels):
        return
    if labels.min() < UNLABELLED:
        raise error(f"labels must be >= {UNLABELLED}, got {int(labels.min())}")
    if num_classes is not None and labels.max() >= num_classes:
        raise error(f"labels must be in [-1, {num_classes - 1}] ({num_classes} classes), got {int(labels.max())}")


def _check_dtypes(arrays: dict[str, np.ndarray]) -> None:
    """What a file holds must already have the right kinds of numbers (the constructor would cast a float
    label or frame number to an integer without a word)."""
    for name, kinds in (("labels", "iu"), ("track_ids", "iu"), ("frame_index", "iu"), ("timestamps", "iuf")):
        if arrays[name].dtype.kind not in kinds:
            raise WindowDataError(f"{name} must be {'integers' if kinds == 'iu' else 'numbers'}, "
                                  f"got {arrays[name].dtype}")


def _track_uniform(tracks: np.ndarray, seed: int) -> np.ndarray:
    """A fixed pseudo-uniform draw in [0, 1) per track id and seed (splitmix64)."""
    x = tracks.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def concat(windows: list[WindowData], camera: str | None = None) -> WindowData:
    """Concatenate windows (e.g. several historical windows into one training set)."""
    if not windows:
        raise ValueError("concat needs at least one window")
    sizes = {w.image_size for w in windows if len(w)}
    if len(sizes) > 1:
        raise WindowDataError(f"cannot concatenate crops of different sizes {sorted(sizes)}")
    counts = {w.num_classes for w in windows if w.num_classes is not None}
    if len(counts) > 1:
        raise WindowDataError(f"cannot concatenate windows of different class counts {sorted(counts)}")
    return WindowData(
        images=np.concatenate([w.images for w in windows]),
        labels=np.concatenate([w.labels for w in windows]),
        track_ids=np.concatenate([w.track_ids for w in windows]),
        frame_index=np.concatenate([w.frame_index for w in windows]),
        timestamps=np.concatenate([w.timestamps for w in windows]),
        camera=windows[0].camera if camera is None else camera,
        window=windows[-1].window,
        num_classes=next(iter(counts), None),
    )


def score_tracks(
    track_ids: np.ndarray, frame_index: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
    processed: np.ndarray,
) -> float:
    """Accuracy over all labelled objects in all frames when only `processed` crops were inferred.

    An object in a skipped frame keeps its track's last prediction from an earlier processed frame;
    an object whose track was not yet seen in a processed frame counts as a miss. Unlabelled crops
    (label -1) are ignored. Returns 0.0 when nothing is labelled.
    """
    track_ids = np.asarray(track_ids)
    frame_index = np.asarray(frame_index)
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    processed = np.asarray(processed, dtype=bool)
    n = len(labels)
    if not (len(track_ids) == len(frame_index) == len(predictions) == len(processed) == n):
        raise ValueError("track_ids, frame_index, labels, predictions, processed must have equal length")
    if n == 0:
        return 0.0
    order = np.lexsort((frame_index, track_ids))  # by track, then frame
    tr, pr, proc = track_ids[order], predictions[order], processed[order]
    pos = np.where(proc, np.arange(n), -1)
    last = np.maximum.accumulate(pos)  # index of the latest processed crop so far (any track)
    group_start = np.r_[0, np.flatnonzero(tr[1:] != tr[:-1]) + 1]
    starts = np.repeat(group_start, np.diff(np.r_[group_start, n]))
    seen = last >= starts  # the latest processed crop belongs to this track
    effective = np.where(seen, pr[np.clip(last, 0, None)], -2)  # -2: never a correct class
    lab = labels[order]
    mask = lab >= 0
    if not mask.any():
        return 0.0
    return float((effective[mask] == lab[mask]).mean())


def processed_mask_for_stride(frame_index: np.ndarray, stride: int, offset: int = 0) -> np.ndarray:
    """Frames processed when every `stride`-th frame is inferred, counted from the first frame."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    frame_index = np.asarray(frame_index)
    if frame_index.size == 0:
        return np.zeros(0, dtype=bool)
    return ((frame_index - frame_index.min() - offset) % stride) == 0


def score_with_stride(
    track_ids: np.ndarray, frame_index: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
    stride: int, offset: int = 0,
) -> float:
    """Accuracy when only every `stride`-th frame is inferred (see `score_tracks`).

    `predictions` holds a prediction for every crop; those on skipped frames are ignored.
    """
    return score_tracks(track_ids, frame_index, labels, predictions,
                        processed_mask_for_stride(frame_index, stride, offset))


# The original's inference profile strides.
PROFILE_STRIDES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)


def stride_profile(
    window: WindowData, predictions: np.ndarray, strides: tuple[int, ...] = PROFILE_STRIDES,
) -> dict[int, float]:
    """Stride -> accuracy factor relative to stride 1 (the original's inference-profile format).

    Averaged over all stride phases (offsets), so the profile does not depend on where the window
    happened to start.
    """
    base = score_with_stride(window.track_ids, window.frame_index, window.labels, predictions, 1)
    out: dict[int, float] = {}
    for s in strides:
        acc = np.mean([score_with_stride(window.track_ids, window.frame_index, window.labels,
                                         predictions, s, off) for off in range(s)])
        out[int(s)] = float(acc / base) if base > 0 else 0.0
    return out
