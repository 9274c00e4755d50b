"""Progress of long work: rich progress bars when stderr is a terminal, plain log lines otherwise (CI
logs, `make demo` piped to a file, a trainer's log), so that minutes of training never pass in silence.

    with ProgressReporter("bootstrap") as report:
        task = report.task("edge model", total=4, unit="epoch")
        task.advance("0.81 held-out")  # -> "bootstrap: edge model epoch 1/4, 0.81 held-out, 12 s"

Lines go to the `ekya.progress` logger (PROGRESS_LOGGER) at the reporter's level (INFO by default);
a command whose console shows warnings only calls `show_progress_lines()` to let them through.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Self

PROGRESS_LOGGER = "ekya.progress"

# The bars drawn now: a terminal shows one live display, so a reporter entered inside another one (the
# bootstrap inside the demo) adds its bars to the outer one's.
_live_bars: Any = None


def show_progress_lines(level: int = logging.INFO) -> None:
    """Let progress lines at `level` reach the root logger's handlers even where the root logger is
    quieter (a command that shows warnings only)."""
    logger = logging.getLogger(PROGRESS_LOGGER)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)


def _start_bars() -> Any:
    """A started rich Progress on stderr: a line per task with its bar, steps, status and time."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=Console(stderr=True))
    bars.start()
    return bars


class ProgressTask:
    """One piece of work of known size (epochs, cameras, windows); `advance` after each step."""

    def __init__(self, reporter: ProgressReporter, label: str, total: int, unit: str, completed: int,
                 bar_id: Any) -> None:
        self._reporter = reporter
        self.label = label
        self.total = total
        self.unit = unit
        self.completed = completed
        self._bar_id = bar_id
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, status: str = "", steps: int = 1) -> None:
        """`steps` more done; `status` says how it went (e.g. "0.81 held-out")."""
        with self._lock:
            self.completed += steps
            self._reporter._show(self, status)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def line(self, status: str = "") -> str:
        step = f"{self.unit} {self.completed}/{self.total}" if self.unit else f"{self.completed}/{self.total}"
        parts = [f"{self._reporter.title}: {self.label} {step}"]
        if status:
            parts.append(status)
        elapsed = self.elapsed
        parts.append(f"{elapsed:.1f} s" if elapsed < 10 else f"{elapsed:.0f} s")
        return ", ".join(parts)


class ProgressReporter:
    """Reports tasks as rich bars (stderr is a terminal, or bars=True) or as log lines; nothing at all
    when disabled. Use it as a context manager: the bars are drawn between enter and exit."""

    def __init__(self, title: str, *, enabled: bool = True, bars: bool | None = None,
                 level: int = logging.INFO) -> None:
        self.title = title
        self.enabled = enabled
        self.level = level
        self._want_bars = enabled and (sys.stderr.isatty() if bars is None else bars)
        self._bars: Any = None  # the started rich.progress.Progress this reporter draws in
        self._owns_bars = False
        self._log = logging.getLogger(PROGRESS_LOGGER)

    @property
    def shows_bars(self) -> bool:
        return self._bars is not None

    def __enter__(self) -> Self:
        global _live_bars
        if self._want_bars:
            if _live_bars is None:
                _live_bars = _start_bars()
                self._owns_bars = True
            self._bars = _live_bars
        return self

    def __exit__(self, *exc: object) -> None:
        global _live_bars
        if self._owns_bars:
            self._bars.stop()
            _live_bars = None
            self._owns_bars = False
        self._bars = None

    def task(self, label: str, total: int, *, unit: str = "", completed: int = 0) -> ProgressTask:
        """A task of `total` steps (`completed` of them already done, e.g. before a resume)."""
        bar_id = None
        if self._bars is not None:
            bar_id = self._bars.add_task(f"{self.title}: {label}", total=total, completed=completed, status="")
        return ProgressTask(self, label, total, unit, completed, bar_id)

    def note(self, message: str) -> None:
        """A one-off line (above the bars, or a log line)."""
        if not self.enabled:
            return
        if self._bars is not None:
            self._bars.console.print(f"{self.title}: {message}")
        else:
            self._log.log(self.level, "%s: %s", self.title, message)

    def _show(self, task: ProgressTask, status: str) -> None:
        if not self.enabled:
            return
        if self._bars is not None and task._bar_id is not None:
            self._bars.update(task._bar_id, completed=task.completed, status=status)
        else:
            self._log.log(self.level, "%s", task.line(status))
