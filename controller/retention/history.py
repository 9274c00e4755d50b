"""Window records beyond what the state file keeps: appended to the windows log (windows.jsonl, one record a
line, rotated to windows.jsonl.1 past its size), so the state stays small while the reports can still read
a long run's whole history."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from pydantic import ValidationError

from controller.layout import DataLayout
from controller.reconcile.records import WindowRecord
from controller.state import ControllerState

log = logging.getLogger("controller")


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def archive_oldest(state: ControllerState, layout: DataLayout, count: int) -> int:
    """Move the state's `count` oldest window records to the windows log; returns how many moved. The log is
    written (and synced) before the records leave the state: a crash in between leaves a record in both,
    which readers take once (window_history)."""
    if count <= 0:
        return 0
    oldest = state.history[:count]
    with open(layout.windows_log, "a", encoding="utf-8") as handle:
        for record in oldest:
            handle.write(record.model_dump_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    del state.history[:count]
    return len(oldest)


def window_history(layout: DataLayout, state: ControllerState | None) -> list[WindowRecord]:
    """Every window record still on disk, oldest first: the windows log's (rotated copy first), then the
    state's; a window recorded twice is taken from the later source."""
    by_window: dict[int, WindowRecord] = {}
    for path in (rotated(layout.windows_log), layout.windows_log):
        for record in _read_log(path):
            by_window[record.window] = record
    for record in state.history if state is not None else []:
        by_window[record.window] = record
    return [by_window[w] for w in sorted(by_window)]


def _read_log(path: Path) -> list[WindowRecord]:
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(WindowRecord.model_validate(json.loads(line)))
        except (ValueError, ValidationError):  # a line cut by a crash mid-append: the rest is still good
            log.warning("%s:%d: not a window record; skipped", path, number)
    return records
