"""Window-by-window progress of a deployment run that blocks its caller (the demo's comparison runs the
controller in-process): a thread watches the camera clients' per-window result files (each in its own
results directory, protocol/camera_results.py) and advances a task."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Self

from protocol.camera_results import CameraResults
from trainer.progress import ProgressTask


class WindowWatcher:
    """Advances `task` by one window once every camera has written its result for it, with the cameras'
    mean accuracy as the status. Result files older than the watcher (an earlier run's) do not count."""

    def __init__(self, results: Mapping[str, CameraResults], task: ProgressTask, poll_seconds: float = 1.0) -> None:
        self.results = dict(results)  # camera -> its results directory
        self.task = task
        self.poll_seconds = poll_seconds
        self._since = time.time() - 1.0  # slack for file systems that keep mtimes in whole seconds
        self._next_window = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="window-progress", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # the last window's results may have come after the last poll

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.poll()

    def poll(self) -> None:
        """Advance over every window whose results are all in (called by the thread, and once at exit)."""
        while self._next_window < self.task.total:
            accuracies = self._window_accuracies(self._next_window)
            if accuracies is None:
                return
            known = [a for a in accuracies if a is not None]
            self.task.advance(f"mean accuracy {sum(known) / len(known):.3f}" if known else "")
            self._next_window += 1

    def _window_accuracies(self, window: int) -> list[float | None] | None:
        """Each camera's measured accuracy for `window`, or None while any camera's result is missing."""
        accuracies: list[float | None] = []
        for results in self.results.values():
            try:
                if results.window_file(window).stat().st_mtime < self._since:
                    return None
            except OSError:
                return None
            result = results.read_window(window)
            if result is None:
                return None
            accuracies.append(result.get("accuracy"))
        return accuracies
