"""A camera's spool: sampled frames written in chunks for the controller to label and train on.

Chunks are written atomically (never half-written) and unlabelled: retraining labels come from the
golden model. When the source has ground truth it is kept beside the chunk (`.truth.npy`) for
measuring, never for training. Disk use is bounded: the oldest chunks go first.
"""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import numpy as np

from controller.layout import DataLayout, window_tag
from trainer.atomic import atomic_write_bytes
from trainer.streams.base import UNLABELLED, WindowData, concat

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, layout: DataLayout, camera: str, budget_bytes: int) -> None:
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
            buffer = io.BytesIO()
            np.save(buffer, truth)
            atomic_write_bytes(path.with_suffix(".truth.npy"), buffer.getvalue())
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
            for part in (chunk, chunk.with_suffix(".truth.npy")):
                if part.exists():
                    total -= part.stat().st_size
                    part.unlink()
            dropped.append(chunk)
        if dropped:
            log.warning("%s: spool over its %d-byte budget; dropped %d oldest chunks", self.camera,
                        self.budget_bytes, len(dropped))
        return dropped

    def read_window(self, window: int) -> tuple[WindowData, np.ndarray | None]:
        """All spooled crops of `window` (unlabelled) and their ground truth where known."""
        directory = self.layout.spool_dir(self.camera, window)
        chunks = sorted(directory.glob("chunk-*.npz")) if directory.is_dir() else []
        parts, truths = [], []
        for chunk in chunks:
            parts.append(WindowData.load(chunk))
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
