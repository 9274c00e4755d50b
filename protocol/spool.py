"""A camera's spool: sampled frames written in chunks for the controller to label and train on.

Chunks are written atomically (never half-written) and unlabelled: retraining labels come from the
golden model, written beside the chunk (`.labels.npy`, atomically) by whoever labels it first: the
controller labels the open window's chunks as they arrive, and what is left when the window closes.
When the source has ground truth it is kept beside the chunk (`.truth.npy`) for measuring, never for
training. Disk use is bounded: the oldest chunks go first.
"""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_bytes
from protocol.files import CameraFiles, window_tag
from trainer.streams.base import UNLABELLED, WindowData, concat

log = logging.getLogger(__name__)

SIDECARS = (".truth.npy", ".labels.npy")  # files beside a chunk: ground truth, golden labels
SPOOL_CHUNK_SECONDS = 5.0  # a camera writes its sampled frames this often: the labeller's cadence too


def _save_array(path: Path, values: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, values)
    atomic_write_bytes(path, buffer.getvalue())


class Spool:
    def __init__(self, layout: CameraFiles, camera: str, budget_bytes: int) -> None:
        self.layout = layout
        self.camera = camera
        self.budget_bytes = budget_bytes
        self.root = layout.spool_root(camera)

    def write_chunk(self, window: int, index: int, crops: WindowData) -> Path | None:
        if len(crops) == 0:
            return None
        directory = self.layout.spool_dir(self.camera, window)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"chunk-{index:05d}.npz"
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

    def read_window(self, window: int) -> tuple[WindowData, np.ndarray | None]:
        """All spooled crops of `window`, golden-labelled where their chunk was (UNLABELLED otherwise),
        and their ground truth where known."""
        parts, truths = [], []
        for chunk in self.chunks(window):
            try:
                part = WindowData.load(chunk)
            except FileNotFoundError:  # dropped by the disk budget since it was listed
                continue
            labels_file = chunk.with_suffix(".labels.npy")
            if labels_file.is_file():
                labels = np.load(labels_file)
                if len(labels) == len(part):
                    part = part.with_labels(labels)
            parts.append(part)
            truth_file = chunk.with_suffix(".truth.npy")
            truths.append(np.load(truth_file) if truth_file.exists() else None)
        if not parts:
            return WindowData.empty(camera=self.camera, window=window), None
        data = concat(parts, camera=self.camera)
        truth = np.concatenate(truths) if all(t is not None for t in truths) else None
        return data, truth

    def drop_windows_before(self, window: int) -> None:
        if not self.root.exists():
            return
        for directory in self.root.iterdir():
            if directory.name.startswith("w") and directory.name < window_tag(window):
                shutil.rmtree(directory, ignore_errors=True)
