"""Saturating learning curves fitted to micro-profile measurements.

The original's curve is f(x) = 1 - (1/(b0 x + b1) + b2), x in epochs, seeded through the start accuracy
a0 = f(0). With b2 fixed by the seed it is f(x) = a0 + g * k x / (1 + k x), where g = 1/b1 is the gain
at saturation and k = b0/b1 the rate; we fit (g, k) with bounds (a0 + g within [0, 1], g may be
negative: retraining can hurt) and a robust (soft-L1) loss. A fit that fails or is degenerate falls
back to a conservative estimate (never a dropped config): the mean of the last two measured accuracies,
with no extrapolated gain (the start accuracy when nothing was measured).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares


@dataclass(frozen=True)
class LearningCurve:
    start: float  # a0, accuracy at x = 0
    gain: float  # g: accuracy gained at saturation (a0 + g <= 1)
    rate: float  # k: 1 / (epochs to reach half the gain)
    fitted: bool  # False: the conservative fallback
    fallback_accuracy: float | None = None

    def __call__(self, x: float) -> float:
        if not self.fitted:
            return float(self.fallback_accuracy if self.fallback_accuracy is not None else self.start)
        kx = self.rate * max(x, 0.0)
        return float(np.clip(self.start + self.gain * kx / (1.0 + kx), 0.0, 1.0))

    @property
    def original_params(self) -> tuple[float, float, float] | None:
        """(b0, b1, b2) of the original's form, when the gain is positive."""
        if not self.fitted or self.gain <= 0:
            return None
        b1 = 1.0 / self.gain
        return self.rate * b1, b1, 1.0 - self.start - self.gain


def fit_learning_curve(start: float, epochs: Sequence[float], accuracies: Sequence[float]) -> LearningCurve:
    """Fit f through (0, start) and the measured (epoch, accuracy) points."""
    a0 = float(np.clip(start, 0.0, 1.0)) if math.isfinite(start) else 0.0
    pts = [(float(x), float(y)) for x, y in zip(epochs, accuracies)
           if math.isfinite(float(x)) and math.isfinite(float(y)) and float(x) > 0]
    ys = [min(max(y, 0.0), 1.0) for _, y in pts]
    if not pts:
        return LearningCurve(a0, 0.0, 0.0, False, a0)
    fallback = float(np.mean(ys[-2:]))
    xs = np.array([x for x, _ in pts])
    y = np.array(ys)
    if len(pts) < 2 or np.ptp(xs) == 0:
        return LearningCurve(a0, 0.0, 0.0, False, fallback)
    lo_g, hi_g = -a0, 1.0 - a0
    if hi_g - lo_g <= 1e-9:
        return LearningCurve(a0, 0.0, 0.0, False, fallback)

    def resid(p: np.ndarray) -> np.ndarray:
        g, k = p
        kx = k * xs
        return a0 + g * kx / (1.0 + kx) - y

    g0 = float(np.clip((y.max() if y.mean() >= a0 else y.min()) - a0, lo_g + 1e-6, hi_g - 1e-6))
    best = None
    for k0 in (0.1, 1.0, 5.0):
        try:
            r = least_squares(resid, x0=[g0, k0], bounds=([lo_g, 1e-4], [hi_g, 100.0]), loss="soft_l1",
                              f_scale=0.02, max_nfev=200)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if r.success and np.all(np.isfinite(r.x)) and (best is None or r.cost < best.cost):
            best = r
    if best is None:
        return LearningCurve(a0, 0.0, 0.0, False, fallback)
    g, k = (float(v) for v in best.x)
    return LearningCurve(a0, g, k, True)


def extrapolation_point(epochs: float, data_fraction: float, profile_fraction: float,
                        data_exponent: float = 0.5) -> float:
    """x (in micro-profile epochs) for a config's epochs and data fraction.

    A config epoch passes over data_fraction of the window's data, a micro-profile epoch over
    profile_fraction of it. data_exponent 0 extrapolates in epochs only (the original); 1 counts samples
    seen; the default 0.5 credits more data with diminishing returns.
    """
    if profile_fraction <= 0:
        raise ValueError("profile_fraction must be > 0")
    return float(epochs) * (max(data_fraction, 1e-9) / profile_fraction) ** data_exponent
