"""PLACEHOLDER until the registry branch merges: the flags the reconcile core reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .profiles import Plan, Problem


@dataclass(frozen=True)
class Scheduler:
    name: str
    plan: Callable[[Problem, Mapping[str, object]], Plan] | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    replans: bool = False
    profiles: bool = False
    fixed_config: bool = False
    retrains: bool = True
    forecasts_drift: bool = False
    in_comparisons: bool = True


_REGISTRY = {
    "thief": Scheduler("thief", replans=True, profiles=True, forecasts_drift=True),
    "ekya": Scheduler("ekya", replans=True, profiles=True, forecasts_drift=True),
    "fair": Scheduler("fair", fixed_config=True, parameters={"inference_fraction": "fair_inference_weight"}),
    "uniform": Scheduler("uniform", fixed_config=True,
                         parameters={"inference_fraction": "uniform_inference_fraction"}),
    "noretrain": Scheduler("noretrain", retrains=False),
}


def scheduler(name: str) -> Scheduler:
    return _REGISTRY[name]
