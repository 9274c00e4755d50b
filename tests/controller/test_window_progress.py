"""controller.window_progress: the demo's window-by-window progress from the cameras' own result files."""

from __future__ import annotations

import io
import logging
import os
import sys
import time

from controller.window_progress import WindowWatcher
from protocol.camera_results import CameraResults
from trainer.progress import PROGRESS_LOGGER, ProgressReporter


def _result(results: dict[str, CameraResults], camera: str, window: int, accuracy: float | None) -> None:
    results[camera].write_window(window, {"accuracy": accuracy})


def test_a_window_counts_once_every_camera_has_a_fresh_result(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    results = {camera: CameraResults(tmp_path / camera) for camera in ("a", "b")}
    _result(results, "a", 0, 0.9)
    _result(results, "b", 0, 0.9)
    old = time.time() - 3600  # an earlier run's results
    for camera in ("a", "b"):
        os.utime(results[camera].window_file(0), (old, old))
    task = ProgressReporter("demo").task("scheduler 1/1 (thief):", total=3, unit="window")
    with WindowWatcher(results, task, poll_seconds=0.05) as watcher:
        watcher.poll()
        assert task.completed == 0
        _result(results, "a", 0, 0.8)
        _result(results, "b", 0, 0.7)
        _result(results, "a", 1, None)  # camera b has not finished window 1
        watcher.poll()
        assert task.completed == 1
        _result(results, "b", 1, None)
    assert task.completed == 2  # the last check at exit
    steps = [r.getMessage().rsplit(", ", 1)[0] for r in caplog.records if r.name == PROGRESS_LOGGER]
    assert steps == ["demo: scheduler 1/1 (thief): window 1/3, mean accuracy 0.750",
                     "demo: scheduler 1/1 (thief): window 2/3"]  # no camera measured window 1
