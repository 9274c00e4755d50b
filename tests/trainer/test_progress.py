"""trainer.progress: log lines where stderr is not a terminal, rich bars where it is, nothing when off."""

from __future__ import annotations

import io
import logging
import re
import sys

import pytest

from trainer.progress import PROGRESS_LOGGER, ProgressReporter, show_progress_lines


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]


def test_plain_lines_when_stderr_is_not_a_terminal(caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    with ProgressReporter("bootstrap") as report:
        assert not report.shows_bars
        report.note("training the edge model")
        task = report.task("edge model", total=4, unit="epoch")
        task.advance("0.81 held-out")
        task.advance()
        report.task("history windows", total=3, completed=1).advance("cam1")
    lines = _lines(caplog)
    assert lines[0] == "bootstrap: training the edge model"
    assert re.fullmatch(r"bootstrap: edge model epoch 1/4, 0\.81 held-out, \d+\.\d s", lines[1]), lines[1]
    assert re.fullmatch(r"bootstrap: edge model epoch 2/4, \d+\.\d s", lines[2]), lines[2]
    assert re.fullmatch(r"bootstrap: history windows 2/3, cam1, \d+\.\d s", lines[3]), lines[3]
    assert len(lines) == 4 and sys.stderr.getvalue() == ""  # through logging only


def test_disabled_or_quieter_reporters_say_nothing_at_info(caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    with ProgressReporter("off", enabled=False) as report:
        report.note("hidden")
        report.task("work", total=2).advance("hidden")
    with ProgressReporter("debug", level=logging.DEBUG) as report:
        report.task("work", total=2).advance("hidden")
    assert _lines(caplog) == []


def test_bars_on_a_terminal_in_one_live_display(caplog, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    with ProgressReporter("demo") as outer:
        assert outer.shows_bars
        outer.task("scheduler 1/2 (thief):", total=4, unit="window").advance("mean accuracy 0.800")
        with ProgressReporter("bootstrap") as inner:  # a terminal shows one live display: the outer one's
            assert inner.shows_bars
            inner.task("edge model", total=2, unit="epoch").advance("0.700 held-out")
        assert outer.shows_bars and not inner.shows_bars
    shown = terminal.getvalue()
    assert "demo: scheduler 1/2 (thief):" in shown and "1/4" in shown and "mean accuracy 0.800" in shown
    assert "bootstrap: edge model" in shown and "0.700 held-out" in shown
    assert _lines(caplog) == []
    with ProgressReporter("again") as later:  # the display closed with the outer reporter: a new one opens
        assert later.shows_bars


def test_show_progress_lines_lets_them_past_a_quieter_root(caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    root, progress_logger = logging.getLogger(), logging.getLogger(PROGRESS_LOGGER)
    levels = root.level, progress_logger.level
    root.setLevel(logging.WARNING)  # a command's console at its default level
    progress_logger.setLevel(logging.NOTSET)
    try:
        ProgressReporter("demo").task("scheduler 1/1 (fair):", total=1, unit="window").advance()
        assert _lines(caplog) == []
        show_progress_lines()
        ProgressReporter("demo").task("scheduler 1/1 (fair):", total=1, unit="window").advance()
    finally:
        root.setLevel(levels[0])
        progress_logger.setLevel(levels[1])
    assert [line.split(",")[0] for line in _lines(caplog)] == ["demo: scheduler 1/1 (fair): window 1/1"]
