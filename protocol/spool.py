"""A camera's spool: sampled frames written in chunks for the controller to label and train on.

Chunks are written atomically (never half-written) and unlabelled: retraining labels come from the
golden model, written beside the chunk (`.labels.npy`, atomically) by whoever labels it first: the
controller labels the open window's chunks as they arrive, and what is left when the window closes.
When the source has ground truth it is kept beside the chunk (`.truth.npy`) for measuring, never for
training. Crops captured by the serving model keep its top-1 classes beside the chunk (`.served.npy`):
with the golden labels, the serving model's live accuracy (golden agreement). Disk use is bounded: the
oldest chunks go first. A chunk or sidecar that cannot be read is quarantined (protocol/quarantine.py)
and the window goes on without it.
"""

from __future__ import annotations

import io
import logging
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_bytes
from protocol.files import CameraFiles, window_tag
from protocol.quarantine import Quarantine
from trainer.streams.base import NUM_CLASSES, UNLABELLED, WindowData, WindowDataError, concat

log = logging.getLogger(__name__)

SIDECARS = (".truth.npy", ".labels.npy", ".served.npy")  # beside a chunk: ground truth, golden labels, served
SPOOL_CHUNK_SECONDS = 5.0  # a camera writes its sampled frames this often: the labeller's cadence too


def _save_array(path: Path, values: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, values)
    atomic_write_bytes(path, buffer.getvalue())


class Spool:
    def __init__(self, layout: CameraFiles, camera: str, budget_bytes: int,
                 quarantine: Quarantine | None = None, num_classes: int = NUM_CLASSES) -> None:
        self.layout = layout
        self.num_classes = num_classes  # the deployment's class count: golden labels index its `classes`
        self.camera = camera
        self.budget_bytes = budget_bytes
        self.root = layout.spool_root(camera)
        self.quarantine = quarantine or Quarantine(layout)  # where a corrupt chunk or sidecar goes

    def chunk_path(self, window: int, index: int | str) -> Path:
        """A chunk's file: numbered (a camera's N-th of the window) or named (after its capture file)."""
        name = f"chunk-{index:05d}.npz" if isinstance(index, int) else f"chunk-{index}.npz"
        return self.layout.spool_dir(self.camera, window) / name

    def write_chunk(self, window: int, index: int | str, crops: WindowData,
                    served: np.ndarray | None = None) -> Path | None:
        """`served`: the serving model's class per crop, written before the chunk (a chunk, once there,
        has its sidecar)."""
        if len(crops) == 0:
            return None
        path = self.chunk_path(window, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        if served is not None:
            _save_array(path.with_suffix(".served.npy"), np.asarray(served, dtype=np.int64))
        truth = crops.labels.copy()
        crops.with_labels(np.full(len(crops), UNLABELLED, dtype=np.int64)).save(path)
        if np.any(truth >= 0):
            _save_array(path.with_suffix(".truth.npy"), truth)
        self.enforce_budget()
        return path

    def usage_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0

    def enforce_budget(self) -> list[Path]:
        """Delete the oldest chunks until the spool fits its budget; returns what was deleted."""
        if not self.root.exists():
            return []
        files = sorted((p for p in self.root.rglob("chunk-*.npz")), key=lambda p: (p.parent.name, p.name))
        total = self.usage_bytes()
        dropped = []
        for chunk in files:
            if total <= self.budget_bytes:
                break
            for part in (chunk, *(chunk.with_suffix(suffix) for suffix in SIDECARS)):
                if part.exists():
                    total -= part.stat().st_size
                    part.unlink()
            dropped.append(chunk)
        if dropped:
            log.warning("%s: spool over its %d-byte budget; dropped %d oldest chunks", self.camera,
                        self.budget_bytes, len(dropped))
        return dropped

    def chunks(self, window: int) -> list[Path]:
        directory = self.layout.spool_dir(self.camera, window)
        return sorted(directory.glob("chunk-*.npz")) if directory.is_dir() else []

    def unlabelled_chunks(self, window: int) -> list[Path]:
        return [c for c in self.chunks(window) if not c.with_suffix(".labels.npy").is_file()]

    def write_labels(self, chunk: Path, labels: np.ndarray) -> None:
        """Golden labels of one chunk's crops, in its order."""
        _save_array(chunk.with_suffix(".labels.npy"), np.asarray(labels, dtype=np.int64))

    def served_agreement(self, window: int) -> tuple[int, int]:
        """(crops whose served class equals their golden label, crops with both) over the window's chunks:
        the serving model's accuracy on live traffic, where no ground truth is known."""
        agree = total = 0
        for chunk in self.chunks(window):
            if not chunk.with_suffix(".labels.npy").is_file() or not chunk.with_suffix(".served.npy").is_file():
                continue
            served = self._read_sidecar(chunk, ".served.npy", None)
            labels = self._read_sidecar(chunk, ".labels.npy", None)
            if served is None or labels is None or len(served) != len(labels):
                continue  # (one of different length than its chunk: read_window quarantines it)
            known = labels >= 0  # a crop the golden model's classes do not map (class_map) has no label
            agree += int((served[known] == labels[known]).sum())
            total += int(known.sum())
        return agree, total

    def read_window(self, window: int) -> tuple[WindowData, np.ndarray | None]:
        """All spooled crops of `window`, golden-labelled where their chunk was (UNLABELLED otherwise),
        and their ground truth where known. A corrupt chunk or sidecar is quarantined and left out."""
        loaded: list[tuple[Path, WindowData, np.ndarray | None]] = []
        for chunk in self.chunks(window):
            part = self.load_chunk(chunk)
            if part is None:
                continue
            part.num_classes = self.num_classes
            labels = self._read_sidecar(chunk, ".labels.npy", len(part))
            if labels is not None:
                part = part.with_labels(labels)
            loaded.append((chunk, part, self._read_sidecar(chunk, ".truth.npy", len(part))))
        loaded = self._without_odd_sizes(loaded)
        if not loaded:
            return WindowData.empty(camera=self.camera, window=window), None
        data = concat([part for _, part, _ in loaded], camera=self.camera)
        truths = [truth for _, _, truth in loaded]
        truth = np.concatenate(truths) if all(t is not None for t in truths) else None
        return data, truth

    def _without_odd_sizes(self, loaded: list[tuple[Path, WindowData, np.ndarray | None]]
                           ) -> list[tuple[Path, WindowData, np.ndarray | None]]:
        """A chunk whose crops are not the size of most crops' (a well-formed file of the wrong shape) is
        quarantined: a window's crops are concatenated into one array."""
        sizes: Counter[int] = Counter()
        for _, part, _ in loaded:
            sizes[part.image_size] += len(part)
        if len(sizes) <= 1:
            return loaded
        usual = sizes.most_common(1)[0][0]
        for chunk, part, _ in loaded:
            if part.image_size != usual:
                self._quarantine_chunk(chunk, f"its crops are {part.image_size}px, the window's {usual}px")
        return [entry for entry in loaded if entry[1].image_size == usual]

    def load_chunk(self, chunk: Path) -> WindowData | None:
        """A chunk's crops; None if it is gone (dropped by the disk budget since it was listed) or corrupt
        (then quarantined with its sidecars)."""
        try:
            return WindowData.load(chunk)
        except WindowDataError as exc:
            if chunk.exists():
                self._quarantine_chunk(chunk, exc)
            return None

    def _quarantine_chunk(self, chunk: Path, reason: str | BaseException) -> None:
        self.quarantine.move(self.camera, chunk, reason)
        for suffix in SIDECARS:  # labels and truth mean nothing without their crops
            sidecar = chunk.with_suffix(suffix)
            if sidecar.exists():
                self.quarantine.move(self.camera, sidecar, f"beside the quarantined {chunk.name}")

    def _read_sidecar(self, chunk: Path, suffix: str, length: int | None) -> np.ndarray | None:
        """A chunk's golden labels or ground truth: one class index per crop, or None where there is none
        (a corrupt one is quarantined: its chunk is then labelled again, or measured without truth)."""
        path = chunk.with_suffix(suffix)
        if not path.is_file():
            return None
        try:
            with open(path, "rb") as fh:  # ours to close (np.load leaks its own on a broken zip)
                values = np.load(fh, allow_pickle=False)
            if not isinstance(values, np.ndarray):  # an .npz
                raise ValueError(f"not a .npy array ({type(values).__name__})")
            if values.ndim != 1 or (length is not None and len(values) != length) or values.dtype.kind not in "iu":
                raise ValueError(f"expected {'a row of' if length is None else length} integer labels, "
                                 f"got {values.dtype} {list(values.shape)}")
            if len(values) and (values.min() < UNLABELLED or values.max() >= self.num_classes):
                raise ValueError(f"labels outside [{UNLABELLED}, {self.num_classes - 1}]")
            return values.astype(np.int64)
        except FileNotFoundError:  # dropped with its chunk by the disk budget
            return None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            self.quarantine.move(self.camera, path, exc)
            return None

    def drop_windows_before(self, window: int) -> None:
        if not self.root.exists():
            return
        for directory in self.root.iterdir():
            if directory.name.startswith("w") and directory.name < window_tag(window):
                shutil.rmtree(directory, ignore_errors=True)
