"""Planning data types: retraining options, inference profile, share-to-throughput curve, plans.

All types are immutable and pure (no I/O). Shares are fractions of one GPU (1.0 = a whole GPU).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# The original's inference profile (frame stride -> accuracy factor), 0 beyond the last stride.
DEFAULT_STRIDES: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)
DEFAULT_FACTORS: tuple[float, ...] = (1.0, 0.78, 0.64, 0.60, 0.44, 0.42, 0.41, 0.33, 0.28, 0.15, 0.12, 0.04)
DEFAULT_FULL_SHARE = 0.25
EPS = 1e-9


@dataclass(frozen=True)
class RetrainOption:
    """One retraining configuration for one camera.

    gpu_seconds is the cost at one whole GPU; the wall time at share s is gpu_seconds / throughput(s).
    """

    camera: str
    config: str
    end_accuracy: float
    gpu_seconds: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.end_accuracy <= 1.0 or math.isnan(self.end_accuracy):
            raise ValueError(f"{self.camera}/{self.config}: end_accuracy {self.end_accuracy} not in [0, 1]")
        if not self.gpu_seconds >= 0.0:
            raise ValueError(f"{self.camera}/{self.config}: gpu_seconds {self.gpu_seconds} must be >= 0")


@dataclass(frozen=True)
class ThroughputCurve:
    """Relative training throughput as a function of GPU share, 1.0 at share 1.

    Piecewise linear through (0, 0) and the given points (monotone by construction: a throughput
    measured higher at a smaller share than at a larger one is clipped down, conservatively).
    Beyond the largest point it grows linearly (value at the point x share / point).
    """

    shares: tuple[float, ...] = (1.0,)
    values: tuple[float, ...] = (1.0,)

    @staticmethod
    def linear() -> ThroughputCurve:
        return ThroughputCurve()

    @staticmethod
    def from_points(points: Mapping[float | str, float]) -> ThroughputCurve:
        """Build from measured {share: images per second}; normalised to 1.0 at share 1."""
        pts = sorted((float(k), float(v)) for k, v in points.items())
        if not pts or any(s <= 0 or v <= 0 or not math.isfinite(v) for s, v in pts):
            raise ValueError("throughput points need positive shares and positive finite values")
        shares = [s for s, _ in pts]
        vals = [v for _, v in pts]
        if 1.0 in shares:
            ref = vals[shares.index(1.0)]
        else:  # interpolate (or extrapolate linearly from the largest point) to share 1
            ref = float(np.interp(1.0, shares, vals)) if shares[-1] >= 1.0 else vals[-1] / shares[-1]
        norm = [v / ref for v in vals]
        # monotone non-decreasing in share: from the top down, clip each value to the one above it
        for i in range(len(norm) - 2, -1, -1):
            norm[i] = min(norm[i], norm[i + 1])
        return ThroughputCurve(tuple(shares), tuple(norm))

    def __call__(self, share: float) -> float:
        if share <= 0.0:
            return 0.0
        xs, ys = self.shares, self.values
        if share >= xs[-1]:
            return ys[-1] * share / xs[-1]
        i = bisect.bisect_right(xs, share)
        x0, y0 = (0.0, 0.0) if i == 0 else (xs[i - 1], ys[i - 1])
        x1, y1 = xs[i], ys[i]
        return y0 + (y1 - y0) * (share - x0) / (x1 - x0)

    def array(self, shares: np.ndarray) -> np.ndarray:
        s = np.asarray(shares, dtype=float)
        xs = np.array((0.0,) + self.shares)
        ys = np.array((0.0,) + self.values)
        out = np.interp(s, xs, ys)
        hi = s > xs[-1]
        out[hi] = ys[-1] * s[hi] / xs[-1]
        return np.where(s > 0, out, 0.0)

    @property
    def is_linear(self) -> bool:
        return self.shares == (1.0,) and self.values == (1.0,)


_ARRAYS: dict[tuple[float, ...], np.ndarray] = {}


def _as_array(values: tuple[float, ...]) -> np.ndarray:
    arr = _ARRAYS.get(values)
    if arr is None:
        arr = _ARRAYS[values] = np.asarray(values, dtype=float)
    return arr


@dataclass(frozen=True)
class InferenceProfile:
    """Inference accuracy factor as a function of GPU share.

    A share a processes a fraction of the frames; the effective frame stride is
    thr(full_share) / thr(a) (= full_share / a with the default linear curve), and the factor is
    interpolated over (stride, factor), 0 beyond the last stride, 1 at a share >= full_share.
    """

    strides: tuple[float, ...] = DEFAULT_STRIDES
    factors: tuple[float, ...] = DEFAULT_FACTORS
    full_share: float = DEFAULT_FULL_SHARE
    throughput: ThroughputCurve = field(default_factory=ThroughputCurve)

    def __post_init__(self) -> None:
        if len(self.strides) != len(self.factors) or not self.strides:
            raise ValueError("inference profile needs as many factors as strides")
        if list(self.strides) != sorted(self.strides) or self.strides[0] < 1:
            raise ValueError("inference strides must be increasing and >= 1")
        if self.full_share <= 0:
            raise ValueError("full_share must be > 0")

    def stride(self, share: float) -> float:
        thr = self.throughput
        return math.inf if share <= 0 else thr(self.full_share) / max(thr(share), 1e-300)

    def scale(self, share: float) -> float:
        """Accuracy factor in [0, 1] at this inference share."""
        if share >= self.full_share - EPS:
            return 1.0
        r = self.stride(share)
        st, fa = self.strides, self.factors
        if r > st[-1] + EPS:
            return 0.0
        if r <= st[0]:
            return fa[0]
        i = bisect.bisect_left(st, r)
        x0, x1, y0, y1 = st[i - 1], st[i], fa[i - 1], fa[i]
        return y0 + (y1 - y0) * (r - x0) / (x1 - x0)

    def scale_array(self, shares: np.ndarray) -> np.ndarray:
        """Vectorised scale()."""
        s = np.asarray(shares, dtype=float)
        thr = self.throughput
        tr = s if thr.is_linear else thr.array(s)
        full = self.full_share if thr.is_linear else thr(self.full_share)
        r = np.divide(full, tr, out=np.full(s.shape, np.inf), where=tr > 0)
        out = np.interp(r, self._st, self._fa, right=0.0)
        out[s >= self.full_share - EPS] = 1.0
        return out

    @property
    def _st(self) -> np.ndarray:
        return _as_array(self.strides)

    @property
    def _fa(self) -> np.ndarray:
        return _as_array(self.factors)

    @staticmethod
    def from_pairs(pairs: Iterable[tuple[float, float]], full_share: float = DEFAULT_FULL_SHARE,
                   throughput: ThroughputCurve | None = None) -> InferenceProfile:
        ps = sorted((float(s), float(f)) for s, f in pairs)
        return InferenceProfile(tuple(s for s, _ in ps), tuple(f for _, f in ps), full_share,
                                throughput or ThroughputCurve())


@dataclass(frozen=True)
class CameraState:
    """A camera at planning time: the serving model's accuracy now and its retraining options.

    For a job already running (re-planning), options holds just that config with the remaining
    GPU-seconds; a camera whose job finished has no options.
    """

    name: str
    accuracy: float
    options: tuple[RetrainOption, ...] = ()
    running: str | None = None  # config of a job already running (re-planning), if any
    latency: float | None = None  # fixed wall seconds before a job's model serves (None: the problem's)


@dataclass(frozen=True)
class CameraAllocation:
    camera: str
    config: str | None
    inference_share: float
    training_share: float
    inference_device: int | None = None
    training_device: int | None = None


@dataclass(frozen=True)
class Plan:
    """A scheduler's decision for one window (or the time left of it)."""

    scheduler: str
    gpus: int
    window: float
    allocations: tuple[CameraAllocation, ...]
    planned_accuracy: float  # exact objective (mean over cameras), original's redistribution rule
    plan_seconds: float = 0.0
    placement_ok: bool = True

    def by_camera(self) -> dict[str, CameraAllocation]:
        return {a.camera: a for a in self.allocations}

    @property
    def total_share(self) -> float:
        return sum(a.inference_share + a.training_share for a in self.allocations)


@dataclass(frozen=True)
class Problem:
    """Everything a scheduler needs to plan one window (or its remainder)."""

    cameras: tuple[CameraState, ...]
    gpus: int
    window: float = 200.0
    inference: InferenceProfile = field(default_factory=InferenceProfile)
    throughput: ThroughputCurve = field(default_factory=ThroughputCurve)
    delta: float = 0.1
    a_min: float = 0.0  # floor on a camera's inference accuracy (base x scale)
    max_job_share: float = 1.0  # a job runs on one device
    # Wall seconds every job spends whatever its share (worker start-up, export, validation, model load):
    # a job at share s serves its model job_latency + gpu_seconds / throughput(s) after it starts.
    job_latency: float = 0.0

    def __post_init__(self) -> None:
        if self.gpus < 0:
            raise ValueError("gpus must be >= 0")
        if self.window < 0:
            raise ValueError("window must be >= 0")
        if self.delta <= 0:
            raise ValueError("delta must be > 0")
        if not self.job_latency >= 0:
            raise ValueError("job_latency must be >= 0")

    def latencies(self) -> np.ndarray:
        """Per camera, the fixed wall seconds before its job (started now) can serve."""
        return np.array([self.job_latency if c.latency is None else c.latency for c in self.cameras], dtype=float)

    @property
    def job_cap(self) -> float:
        return min(self.max_job_share, float(self.gpus))


def options_by_config(options: Sequence[RetrainOption]) -> dict[str, RetrainOption]:
    return {o.config: o for o in options}
