"""Users' own data: object crops listed in a CSV manifest, read as per-camera windows.

Manifest format (UTF-8 CSV with a header row; extra columns are ignored):

    path,camera,timestamp,label,track_id,frame_index
    crops/cam1/000001_0.png,cam1,0.0,car,17,0
    crops/cam1/000001_1.png,cam1,0.0,,18,0          <- empty label: unlabelled

- path: image file (any format PIL reads), relative to the manifest's directory or absolute.
- camera: camera name.  timestamp: seconds (float), any origin.
- label (optional column/value): a class name of the deployment's `classes` (default person, car, truck,
  bus, bicycle, motorcycle) or its index; empty = unlabelled (-1).
- track_id (optional): crops of one object over consecutive frames share it; default: one per crop.
- frame_index (optional): default: the rank of the crop's timestamp among the camera's timestamps.

Window w of a camera holds the crops with floor(timestamp / window_seconds) == w. Crops are resized to
crop_size x crop_size (RGB).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.streams.base import CLASSES, UNLABELLED, WindowData

REQUIRED_COLUMNS = ("path", "camera", "timestamp")


class ManifestError(ValueError):
    """The manifest is malformed; the message names the file, line and column."""


@dataclass(frozen=True)
class _Row:
    path: Path
    camera: str
    timestamp: float
    label: int
    track_id: int | None
    frame_index: int | None


def parse_label(value: str, classes: tuple[str, ...] = CLASSES) -> int:
    """A class name (case-insensitive) or index of `classes`; empty: unlabelled."""
    v = value.strip()
    if not v:
        return UNLABELLED
    if v.lstrip("-").isdigit():
        i = int(v)
        if i == UNLABELLED or 0 <= i < len(classes):
            return i
        raise ValueError(f"label index {i} out of range 0-{len(classes) - 1}")
    lowered = [c.lower() for c in classes]
    if v.lower() in lowered:
        return lowered.index(v.lower())
    raise ValueError(f"unknown label {v!r}; expected one of {', '.join(classes)} or empty")


class FolderStream:
    """Windows of the cameras in a manifest. Images are read lazily, per window."""

    def __init__(self, manifest: str | os.PathLike[str], crop_size: int = 64,
                 window_seconds: float = 200.0, classes: tuple[str, ...] = CLASSES) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        self.classes = tuple(classes)
        self.manifest = Path(manifest)
        self.crop_size = crop_size
        self.window_seconds = window_seconds
        self.rows = self._read()

    def _read(self) -> list[_Row]:
        if not self.manifest.is_file():
            raise ManifestError(f"manifest not found: {self.manifest}")
        base = self.manifest.parent
        rows: list[_Row] = []
        with open(self.manifest, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in cols]
            if missing:
                raise ManifestError(f"{self.manifest}: missing column(s) {missing}; header is {cols}")
            for line, rec in enumerate(reader, start=2):
                try:
                    p = Path(rec["path"])
                    tid, fidx = rec.get("track_id") or "", rec.get("frame_index") or ""
                    rows.append(_Row(p if p.is_absolute() else base / p, rec["camera"].strip(),
                                     float(rec["timestamp"]), parse_label(rec.get("label") or "", self.classes),
                                     int(tid) if tid.strip() else None, int(fidx) if fidx.strip() else None))
                except (ValueError, TypeError, AttributeError) as exc:
                    raise ManifestError(f"{self.manifest}:{line}: {exc}") from exc
                if not rows[-1].camera:
                    raise ManifestError(f"{self.manifest}:{line}: empty camera")
        return rows

    def cameras(self) -> list[str]:
        return sorted({r.camera for r in self.rows})

    def window_of(self, timestamp: float) -> int:
        return int(np.floor(timestamp / self.window_seconds))

    def windows(self, camera: str) -> list[int]:
        return sorted({self.window_of(r.timestamp) for r in self.rows if r.camera == camera})

    def load_window(self, camera: str, window: int) -> WindowData:
        from PIL import Image

        cam_rows = [r for r in self.rows if r.camera == camera]
        if not cam_rows:
            raise KeyError(f"no camera {camera!r} in {self.manifest} (cameras: {', '.join(self.cameras())})")
        stamps = np.unique([r.timestamp for r in cam_rows])
        rows = sorted((r for r in cam_rows if self.window_of(r.timestamp) == window), key=lambda r: r.timestamp)
        if not rows:
            return WindowData.empty(self.crop_size, camera, window)
        s = self.crop_size
        images = np.empty((len(rows), s, s, 3), np.uint8)
        for i, r in enumerate(rows):
            try:
                with Image.open(r.path) as im:
                    images[i] = np.asarray(im.convert("RGB").resize((s, s), Image.BILINEAR))
            except OSError as exc:
                raise ManifestError(f"{self.manifest}: cannot read image {r.path}: {exc}") from exc
        # Default track ids: unique per crop, stable across windows (row order in the manifest).
        uid = {id(r): i for i, r in enumerate(self.rows)}
        track = [r.track_id if r.track_id is not None else -(uid[id(r)] + 1) for r in rows]
        frame = [r.frame_index if r.frame_index is not None else int(np.searchsorted(stamps, r.timestamp))
                 for r in rows]
        return WindowData(images=images, labels=np.array([r.label for r in rows]), track_ids=np.array(track),
                          frame_index=np.array(frame), timestamps=np.array([r.timestamp for r in rows]),
                          camera=camera, window=window, meta={"source": str(self.manifest)},
                          num_classes=len(self.classes))


def write_manifest(path: str | os.PathLike[str], rows: list[dict[str, object]]) -> Path:
    """Write a manifest atomically (columns path, camera, timestamp, label, track_id, frame_index)."""
    import io

    from common.atomic import atomic_write_text

    buf = io.StringIO()
    cols = ["path", "camera", "timestamp", "label", "track_id", "frame_index"]
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: r.get(c, "") for c in cols})
    return atomic_write_text(path, buf.getvalue())
