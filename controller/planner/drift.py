"""Drift forecast: what a model measured on the closed window's data will score during the next window.

The planner measures accuracies on the window that just closed, but the plan runs in the next one, where
the scene has drifted further. On drifting streams a model's error grows by roughly the same factor per
window whether it is stale or fresh (measured on the synthetic streams: a stale model 0.28 -> 0.59 error,
one retrained on the closed window 0.06 -> 0.18, both about x2-3 per window), so one per-camera factor
forecasts both the serving model and the retrained candidates: error x growth. The factor is the ratio of
the serving model's error on the two latest windows' data, measured while it was the same model (a swap
in between gives no estimate: the last one is kept; a new model's held-out accuracy on the window it
learned from counts as its first measurement); bounded to [1, max_growth] so a noisy measurement never
forecasts improvement or a collapse: at most a doubling per window (a cap of 3 had the demo's thief
starve every camera's inference for cameras whose drift had already levelled off). Pure code: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_GROWTH = 2.0
MIN_ERROR = 0.02  # below this the ratio of two errors is sampling noise


@dataclass(frozen=True)
class Measurement:
    """The serving model's accuracy on a closed window's labelled data."""

    window: int
    version: int  # the serving version that was measured
    accuracy: float


def error_growth(history: Sequence[Measurement], previous: float = 1.0, max_growth: float = MAX_GROWTH) -> float:
    """Per-window growth of the serving model's error from its two latest measurements, when they are of
    the same model on consecutive windows; otherwise `previous` (the last estimate)."""
    if len(history) < 2:
        return previous
    a, b = history[-2], history[-1]
    if b.window != a.window + 1 or a.version != b.version:
        return previous
    err_a, err_b = max(1.0 - a.accuracy, MIN_ERROR), 1.0 - b.accuracy
    return min(max(err_b / err_a, 1.0), max_growth)


def forecast(accuracy: float, growth: float) -> float:
    """Accuracy one window later when the error grows by `growth` (never below 0)."""
    return max(0.0, 1.0 - (1.0 - accuracy) * max(growth, 1.0))
