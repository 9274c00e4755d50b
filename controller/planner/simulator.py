"""Offline simulation of schedulers over windows of profiles (the original's "utilitysim").

Each window is independent: cameras start from the window's start accuracy. The scheduler plans on the
planning options (predicted or actual), the window executes the actual ones event by event; thief is
re-run on every completion with the time left, the baselines use the original's equal split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from . import schedulers
from .api import plan, replan
from .objective import CameraStatus, WindowOutcome, evaluate
from .profiles import (
    CameraAllocation,
    CameraState,
    InferenceProfile,
    Plan,
    Problem,
    RetrainOption,
    ThroughputCurve,
)


@dataclass(frozen=True)
class CameraProfile:
    name: str
    start_accuracy: float
    actual: tuple[RetrainOption, ...]
    predicted: tuple[RetrainOption, ...] | None = None  # None when the profile has no predictions


@dataclass(frozen=True)
class WindowProfile:
    window: int
    cameras: tuple[CameraProfile, ...]


@dataclass(frozen=True)
class SimSettings:
    gpus: int
    window: float = 200.0
    delta: float = 0.1
    plan_with: str = "actual"  # or "predicted"
    inference: InferenceProfile = field(default_factory=InferenceProfile)
    throughput: ThroughputCurve = field(default_factory=ThroughputCurve)
    fixed_config: str | None = None
    inference_fraction: float | None = None
    replan: bool = True
    a_min: float = 0.0


@dataclass(frozen=True)
class WindowResult:
    window: int
    plan: Plan
    outcome: WindowOutcome
    plan_seconds: float

    @property
    def mean_accuracy(self) -> float:
        return self.outcome.mean_accuracy


@dataclass(frozen=True)
class SimulationResult:
    scheduler: str
    gpus: int
    windows: tuple[WindowResult, ...]

    @property
    def mean_accuracy(self) -> float:
        accs = [a for w in self.windows for a in w.outcome.accuracies]
        return sum(accs) / len(accs) if accs else 0.0

    @property
    def plan_seconds(self) -> float:
        return sum(w.plan_seconds for w in self.windows)

    def to_json(self) -> dict:
        out = []
        for w in self.windows:
            allocs = w.plan.by_camera()
            cams = {}
            for name, acc in zip(w.outcome.cameras, w.outcome.accuracies):
                a = allocs.get(name)
                cams[name] = {
                    "config": a.config if a else None,
                    "inference_share": round(a.inference_share, 6) if a else 0.0,
                    "training_share": round(a.training_share, 6) if a else 0.0,
                    "accuracy": round(acc, 6),
                }
            out.append({"window": w.window, "mean_accuracy": round(w.mean_accuracy, 6), "cameras": cams})
        return {"scheduler": self.scheduler, "gpus": self.gpus, "mean_accuracy": round(self.mean_accuracy, 6),
                "plan_seconds": round(self.plan_seconds, 6), "windows": out}


def window_problem(wp: WindowProfile, s: SimSettings, predicted: bool) -> Problem:
    cams = tuple(
        CameraState(c.name, c.start_accuracy, c.predicted if predicted and c.predicted is not None else c.actual)
        for c in wp.cameras
    )
    return Problem(cams, s.gpus, window=s.window, inference=s.inference, throughput=s.throughput,
                   delta=s.delta, a_min=s.a_min)


def simulate_window(wp: WindowProfile, scheduler: str, s: SimSettings, record: bool = False) -> WindowResult:
    predicted = s.plan_with == "predicted"
    problem = window_problem(wp, s, predicted)
    first = plan(problem, scheduler, fixed_config=s.fixed_config, inference_fraction=s.inference_fraction)
    seconds = [first.plan_seconds]
    actual = {c.name: {o.config: o for o in c.actual} for c in wp.cameras}

    def on_completion(elapsed: float, statuses: tuple[CameraStatus, ...]) -> Sequence[CameraAllocation]:
        p = replan(problem, statuses, elapsed, scheduler)
        seconds.append(p.plan_seconds)
        return p.allocations

    use_replan = s.replan and schedulers.scheduler(scheduler).replans
    outcome = evaluate(replace(problem), first.allocations, on_completion if use_replan else None,
                       actual=actual, record=record)
    return WindowResult(wp.window, first, outcome, sum(seconds))


def simulate(profiles: Sequence[WindowProfile], scheduler: str, s: SimSettings,
             record: bool = False) -> SimulationResult:
    name = scheduler
    if scheduler == "uniform":
        name = f"uniform-{(0.5 if s.inference_fraction is None else s.inference_fraction):g}"
    wins = tuple(simulate_window(wp, scheduler, s, record) for wp in profiles)
    return SimulationResult(name, s.gpus, wins)


def default_fixed_config(profiles: Sequence[WindowProfile]) -> str | None:
    """The baselines' fixed config when none is given: the config of median mean cost (a middle-of-
    the-road choice that needs no knowledge of accuracies); ties by name."""
    costs: dict[str, list[float]] = {}
    for wp in profiles:
        for c in wp.cameras:
            for o in c.actual:
                costs.setdefault(o.config, []).append(o.gpu_seconds)
    if not costs:
        return None
    ranked = sorted(costs, key=lambda k: (sum(costs[k]) / len(costs[k]), k))
    return ranked[(len(ranked) - 1) // 2]


def subset(profiles: Sequence[WindowProfile], cameras: int) -> list[WindowProfile]:
    """The first `cameras` cameras (by name) of every window."""
    names = sorted({c.name for wp in profiles for c in wp.cameras})[:cameras]
    keep = set(names)
    return [WindowProfile(wp.window, tuple(c for c in wp.cameras if c.name in keep)) for wp in profiles]
