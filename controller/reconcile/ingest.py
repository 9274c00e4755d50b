"""Moving the samples the camera models captured inside Triton (protocol/capture.py) into the spool.

Each capture chunk's crops go to the windows their server-side arrival times fall in, by the
controller's window clock (a chunk spanning a boundary is split); crops from before window 0 or of an
already closed window are dropped and counted. They become spool chunks like any other (unlabelled,
track unknown: -1, frame index: the arrival time in microseconds), with the served classes beside them
(`.served.npy`) for the golden-agreement live accuracy.

Crash-safe and idempotent: a spool chunk is named after its capture file and written (its served classes
first) before the capture file is deleted, and a part already in the spool is not written again, so a
pass cut short anywhere is redone without duplicates. A capture file that cannot be read is quarantined;
one that went between the listing and the reading (its writer evicted it, oldest first, over its budget)
is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from controller.reconcile.scope import Scope
from protocol.capture import (
    CHUNK_PREFIX,
    CHUNK_SUFFIX,
    CaptureCounts,
    CapturedCrops,
    CaptureFileError,
    chunk_files,
    read_chunk,
    read_counts,
)
from trainer.streams.base import UNLABELLED, WindowData

log = logging.getLogger("controller")

STALE_TEMP_SECONDS = 600.0
STALE_COUNTS_SECONDS = 3600.0  # a capture temp file this old was left by a stub that died mid-write


class CaptureIngest:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self._lock = threading.Lock()  # the labeller's pass and the close never move the same file twice
        self._counted: dict[str, CaptureCounts] = {}  # each capture writer's counts already exported

    def capture_dir(self, camera: str) -> Path:
        return self.scope.config.capture_dir / camera

    def run(self) -> dict[str, int]:
        """Move every camera's captured chunks into the spool; returns the crops moved per camera."""
        moved: dict[str, int] = {}
        with self._lock:
            for name in self.scope.config.camera_names:
                try:
                    moved[name] = self._camera(name)
                except Exception:  # one camera's trouble is not the others'
                    log.exception("%s: moving captured samples into the spool failed; the next pass retries", name)
        return moved

    def _camera(self, camera: str) -> int:
        directory = self.capture_dir(camera)
        moved = 0
        discarded: Counter[str] = Counter()
        for path in chunk_files(directory):
            try:
                crops = read_chunk(path)
            except CaptureFileError as exc:
                # gone since the listing (its writer evicted it to stay in budget): not corrupt, just gone
                if not isinstance(exc.__cause__, FileNotFoundError) and path.exists():
                    self.scope.quarantine.move(camera, path, exc)
                continue
            moved += self._into_spool(camera, path, crops, discarded)
            path.unlink(missing_ok=True)  # only now: every part of it is in the spool
        _remove_stale_temp_files(directory)
        self._export_writer_counts(camera, directory)
        discarded = +discarded  # only the reasons that dropped something
        if moved or discarded:
            self.scope.state.cameras[camera].captured += moved
            self.scope.metrics.record_capture(camera, moved, discarded)
        if discarded:
            log.warning("%s: dropped %d captured crops of windows already closed or before window 0 (%s)",
                        camera, sum(discarded.values()), ", ".join(f"{k}: {v}" for k, v in discarded.items()))
        return moved

    def _into_spool(self, camera: str, path: Path, crops: CapturedCrops, discarded: Counter[str]) -> int:
        """Write the chunk's crops into their windows' spools; returns how many were newly written."""
        state = self.scope.state
        windows = np.floor((crops.arrival - state.t0) / state.window_seconds).astype(np.int64)
        discarded["before_start"] += int((windows < 0).sum())
        discarded["closed_window"] += int(((windows >= 0) & (windows <= state.closed)).sum())
        spool = self.scope.spool(camera)
        name = path.name.removesuffix(CHUNK_SUFFIX)
        written = 0
        for window in np.unique(windows[windows > max(state.closed, -1)]):
            if spool.chunk_path(int(window), name).exists():
                continue  # written by a pass that did not get to delete the capture file
            part = crops.take(windows == window)
            n = len(part)
            data = WindowData(images=part.images, labels=np.full(n, UNLABELLED, dtype=np.int64),
                              track_ids=np.full(n, -1, dtype=np.int64),
                              frame_index=np.rint(part.arrival * 1e6).astype(np.int64), timestamps=part.arrival,
                              camera=camera, window=int(window), meta={"captured": path.name})
            spool.write_chunk(int(window), name, data, served=part.prediction)
            written += n
        return written


    def _export_writer_counts(self, camera: str, directory: Path) -> None:
        """The capture writers' own counters (samples written, dropped by reason, errors) as metrics: each
        file's growth since the last read; a closed writer's file goes once counted, as does one left
        unchanged for STALE_COUNTS_SECONDS (a stub killed without closing)."""
        total = CaptureCounts()
        for path, counts, closed in read_counts(directory):
            before = self._counted.get(path.name, CaptureCounts())
            delta = counts.minus(before)
            self._counted[path.name] = counts
            total.samples += max(0, delta.samples)
            total.errors += max(0, delta.errors)
            for reason, count in delta.dropped.items():
                total.dropped[reason] += max(0, count)
            try:
                if closed or time.time() - path.stat().st_mtime > STALE_COUNTS_SECONDS:
                    path.unlink(missing_ok=True)
            except OSError:
                pass
        self.scope.metrics.record_capture_writers(camera, total.samples, total.dropped, total.errors)


def _remove_stale_temp_files(directory: Path) -> None:
    """Temp files of writes that never finished (a stub killed mid-write) would hold the budget forever."""
    if not directory.is_dir():
        return
    cutoff = time.time() - STALE_TEMP_SECONDS
    for entry in directory.glob(f".{CHUNK_PREFIX}*.tmp"):
        try:
            if entry.stat().st_mtime < cutoff:
                entry.unlink()
        except OSError:
            pass
