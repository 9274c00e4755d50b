"""A camera client's own results directory (`ekya camera --results DIR`): what it measured, for whoever
ran it (the demo's comparison, a benchmark, a person). Never in the controller's data directory: the
controller reads none of it.

    <dir>/w<W>.json   one finished window: accuracy (sources that know the truth), frames, requests,
                      failures, latency, the stride followed and the model versions that answered
    <dir>/live.json   rolling counters, replaced every few seconds while the camera streams
Both are written atomically: a reader sees the old file or the new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.atomic import atomic_write_json
from protocol.files import window_tag

RESULTS_ROOT = Path("ekya-camera-results")  # the default, relative to the camera's working directory


def default_results_dir(camera: str) -> Path:
    return RESULTS_ROOT / camera


@dataclass(frozen=True)
class CameraResults:
    root: Path  # this camera's results directory

    def window_file(self, window: int) -> Path:
        return self.root / f"{window_tag(window)}.json"

    @property
    def live_file(self) -> Path:
        return self.root / "live.json"

    def write_window(self, window: int, result: dict[str, Any]) -> None:
        atomic_write_json(self.window_file(window), result)

    def write_live(self, live: dict[str, Any]) -> None:
        atomic_write_json(self.live_file, live)

    def read_live(self) -> dict[str, Any] | None:
        """The live counters; None while none are written (or unreadable)."""
        try:
            live = json.loads(self.live_file.read_text())
        except (OSError, ValueError):
            return None
        return live if isinstance(live, dict) else None

    def read_window(self, window: int) -> dict[str, Any] | None:
        """The window's result; None while it is not written (or unreadable)."""
        try:
            result = json.loads(self.window_file(window).read_text())
        except (OSError, ValueError):
            return None
        return result if isinstance(result, dict) else None
