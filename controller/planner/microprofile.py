"""Micro-profiler: measurements -> RetrainOption predictions, config pruning, prediction ledger.

Pure data structures; the controller runs the micro-profiling jobs and persists these (to_dict).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from statistics import median

import numpy as np

from .curves import LearningCurve, extrapolation_point, fit_learning_curve
from .profiles import RetrainOption, ThroughputCurve

# Error ~ (training-set size) ** -0.3: the exponent measured for image classification by Hestness et al.,
# "Deep learning scaling is predictable, empirically" (2017); it also brought bench/microprofiler.py's
# median error on the synthetic streams from 6.6 to 5.1 points (tuned there on 4 camera-windows).
ERROR_EXPONENT = 0.3


@dataclass(frozen=True)
class ConfigSpec:
    """A retraining config's knobs that matter to extrapolation."""

    name: str
    epochs: float
    data_fraction: float  # of the window's labelled data


@dataclass(frozen=True)
class MicroProfile:
    """One config's micro-profile on one camera: brief training from the serving model."""

    camera: str
    config: ConfigSpec
    start_accuracy: float  # the serving model's validation accuracy before training
    epoch_accuracies: tuple[float, ...]  # validation accuracy after each micro-profile epoch
    seconds_per_epoch: float  # wall seconds per micro-profile epoch
    setup_seconds: float = 0.0  # one-off seconds per job (head-only jobs: the backbone features), profile data
    # accuracy the learning curve starts from: the serving model's, or chance when the config resets the head
    curve_start: float | None = None
    profile_fraction: float = 0.1  # the subsample's fraction of the window's data
    profile_share: float = 1.0  # GPU share the micro-profile ran at


@dataclass(frozen=True)
class Prediction:
    option: RetrainOption
    curve: LearningCurve


def predict(mp: MicroProfile, throughput: ThroughputCurve | None = None,
            data_exponent: float = 0.5, error_exponent: float = ERROR_EXPONENT) -> Prediction:
    """Extrapolate accuracy to the config's epochs and data; cost in GPU-seconds at one whole GPU:
    (setup + seconds per epoch x epochs) x throughput(profile share) x (data fraction / profile fraction).

    The retraining worker keeps (and reports) its best validation epoch, so the prediction is of the
    best-so-far accuracy: the curve is fitted to the running maximum of the measured accuracies (a noisy
    dip on a tiny sample then never extrapolates to a collapse) and is at least the best one measured.
    More data also lowers the error the curve saturates at: the error is scaled by
    (data fraction / profile fraction) ** -error_exponent (the power law of learning curves in the
    training-set size; 0 disables it).
    """
    thr = throughput or ThroughputCurve()
    best_so_far = list(accumulate(mp.epoch_accuracies, max))
    xs = list(range(1, len(best_so_far) + 1))
    curve = fit_learning_curve(mp.start_accuracy if mp.curve_start is None else mp.curve_start, xs, best_so_far)
    x = extrapolation_point(mp.config.epochs, mp.config.data_fraction, mp.profile_fraction, data_exponent)
    acc = curve(x)
    measured = [a for a in best_so_far if math.isfinite(a)]
    if measured:
        acc = max(acc, min(max(measured[-1], 0.0), 1.0))
    ratio = max(mp.config.data_fraction, 1e-9) / mp.profile_fraction
    if error_exponent:
        acc = 1.0 - (1.0 - acc) * ratio ** (-error_exponent)
    acc = min(max(acc, 0.0), 1.0)
    seconds = max(mp.setup_seconds, 0.0) + max(mp.seconds_per_epoch, 0.0) * mp.config.epochs
    cost = seconds * thr(mp.profile_share) * mp.config.data_fraction / mp.profile_fraction
    return Prediction(RetrainOption(mp.camera, mp.config.name, acc, cost), curve)


def predict_options(profiles: Iterable[MicroProfile], throughput: ThroughputCurve | None = None,
                    data_exponent: float = 0.5, error_exponent: float = ERROR_EXPONENT) -> list[RetrainOption]:
    """One option per micro-profile (a failed fit gives the conservative fallback, never a drop)."""
    return [predict(mp, throughput, data_exponent, error_exponent).option for mp in profiles]


@dataclass
class ConfigPruner:
    """Which configs to micro-profile: all in the first window; every `period` windows drop `fraction`
    of the remaining ones that were worst (lowest mean rank of predicted accuracy gain per GPU-second,
    dominated configs ranking last), keeping at least `min_keep`."""

    configs: list[str]
    period: int = 2
    fraction: float = 0.25
    min_keep: int = 4
    windows_seen: int = 0
    scores: dict[str, list[float]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    @property
    def active(self) -> list[str]:
        return [c for c in self.configs if c not in self.dropped]

    def observe(self, options: Sequence[RetrainOption], start_accuracy: float) -> None:
        """Record one camera-window's predicted options (call per camera, then end_window)."""
        opts = [o for o in options if o.config in self.active]
        if not opts:
            return
        n = len(opts)
        dominated = {o.config for o in opts for p in opts
                     if p is not o and p.end_accuracy >= o.end_accuracy and p.gpu_seconds <= o.gpu_seconds
                     and (p.end_accuracy > o.end_accuracy or p.gpu_seconds < o.gpu_seconds)}
        value = sorted(opts, key=lambda o: ((o.end_accuracy - start_accuracy) / max(o.gpu_seconds, 1e-6)))
        for rank, o in enumerate(value):
            score = rank / max(n - 1, 1)
            if o.config in dominated:
                score = min(score, 0.0) - 1.0
            self.scores.setdefault(o.config, []).append(score)

    def end_window(self) -> list[str]:
        """Close a window; returns the configs dropped now."""
        self.windows_seen += 1
        if self.windows_seen % self.period != 0:
            return []
        act = self.active
        k = min(int(len(act) * self.fraction), len(act) - self.min_keep)
        if k <= 0:
            return []
        mean = {c: (sum(self.scores[c]) / len(self.scores[c]) if self.scores.get(c) else 0.0) for c in act}
        worst = sorted(act, key=lambda c: (mean[c], c))[:k]
        self.dropped.extend(worst)
        self.scores = {c: v for c, v in self.scores.items() if c not in worst}
        return worst

    def to_dict(self) -> dict:
        return {"configs": self.configs, "period": self.period, "fraction": self.fraction,
                "min_keep": self.min_keep, "windows_seen": self.windows_seen, "scores": self.scores,
                "dropped": self.dropped}

    @staticmethod
    def from_dict(d: dict) -> ConfigPruner:
        return ConfigPruner(list(d["configs"]), d["period"], d["fraction"], d["min_keep"], d["windows_seen"],
                            {k: list(v) for k, v in d["scores"].items()}, list(d["dropped"]))


@dataclass(frozen=True)
class Outcome:
    camera: str
    window: int
    config: str
    predicted_accuracy: float
    actual_accuracy: float
    predicted_gpu_seconds: float
    actual_gpu_seconds: float


@dataclass(frozen=True)
class CostCorrection:
    """What the planner adds to a micro-profiled cost (GPU-seconds at one whole GPU): a fixed overhead per
    job and a factor on the rest (PredictionLedger.cost_correction)."""

    overhead: float = 0.0
    scale: float = 1.0

    def apply(self, predicted: float) -> float:
        return self.overhead + self.scale * predicted

    def undo(self, corrected: float) -> float:
        return max(0.0, corrected - self.overhead) / self.scale

    @property
    def identity(self) -> bool:
        return self.overhead == 0.0 and self.scale == 1.0


@dataclass
class PredictionLedger:
    """Predicted vs actual accuracy and cost of retraining jobs, as results come back."""

    records: list[Outcome] = field(default_factory=list)

    keep: int = 500  # the newest outcomes (the ledger lives in the controller's state file)

    def record(self, outcome: Outcome) -> None:
        self.records.append(outcome)
        del self.records[:-self.keep]

    def cost_correction(self, recent: int = 20, min_records: int = 3,
                        scale_bounds: tuple[float, float] = (0.5, 10.0)) -> CostCorrection:
        """How the recent jobs' actual GPU-seconds relate to their micro-profiled ones: actual = overhead +
        scale x predicted, fitted over the last `recent` jobs (no correction until `min_records` came back).

        A micro-profile times a few epochs on a sample in the controller, not what a job pays besides: a
        fixed part per job (loading its data and model, the backbone features of all its crops, a
        validation pass per epoch, checkpoints), which dominates a head-only job, and a proportional part
        (contention, a busier machine). One factor for both would make a cheap job's overhead inflate every
        costly job's prediction, so the two are fitted apart (Theil-Sen, robust to an odd job). The factor
        is taken as 1 (the micro-profile is right about what it measures) unless the jobs show otherwise
        with 95 % confidence, then the end of the interval nearest 1: jobs that all predict a few tenths of
        a second say little about a factor, and must not multiply a large job tenfold. Jobs of one predicted
        size cannot tell the two apart: the median ratio then. The factor stays within `scale_bounds`; the
        overhead is at least 0 and at most the jobs' median cost."""
        pairs = [(r.predicted_gpu_seconds, r.actual_gpu_seconds) for r in self.records
                 if r.predicted_gpu_seconds > 0 and r.actual_gpu_seconds > 0][-recent:]
        if len(pairs) < min_records:
            return CostCorrection()
        x = np.array([p for p, _ in pairs])
        y = np.array([a for _, a in pairs])
        low, high = scale_bounds
        if x.max() < 1.05 * x.min():
            return CostCorrection(0.0, float(np.clip(np.median(y / x), low, high)))
        from scipy.stats import theilslopes

        _, _, slope_low, slope_high = theilslopes(y, x, alpha=0.95)
        slope = float(np.clip(np.clip(1.0, slope_low, slope_high), low, high))
        overhead = float(np.clip(np.median(y - slope * x), 0.0, np.median(y)))
        return CostCorrection(overhead, slope)

    def median_abs_accuracy_error(self) -> float | None:
        errs = [abs(r.predicted_accuracy - r.actual_accuracy) for r in self.records]
        return median(errs) if errs else None

    def median_cost_ratio(self) -> float | None:
        rs = [r.actual_gpu_seconds / r.predicted_gpu_seconds for r in self.records if r.predicted_gpu_seconds > 0]
        return median(rs) if rs else None

    def to_dict(self) -> dict:
        return {"records": [r.__dict__ for r in self.records]}

    @staticmethod
    def from_dict(d: dict) -> PredictionLedger:
        return PredictionLedger([Outcome(**r) for r in d.get("records", [])])
