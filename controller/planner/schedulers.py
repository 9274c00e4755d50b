"""The one registry of schedulers: what each is called, how it plans, which config keys it reads and how
the controller runs it. The config's `scheduler.name`, the CLI's choices, the simulator and the
controller's window loop all read it, so adding a scheduler is one module with its plan function plus
one `register_scheduler` call.

Pure like the rest of the planner: no I/O, no framework imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .baselines import fair, noretrain, uniform
from .ekya import ekya
from .profiles import Plan, Problem
from .thief import thief
from .thief_reference import thief_reference

__all__ = ["PlanFunction", "Scheduler", "compared_scheduler_names", "register_scheduler", "scheduler",
           "scheduler_names"]

# (the window's problem, the scheduler's parameters) -> the plan; a parameter it does not take is ignored
PlanFunction = Callable[[Problem, Mapping[str, object]], Plan]


@dataclass(frozen=True)
class Scheduler:
    """A scheduler and how the controller runs it.

    parameters: plan parameter -> the `scheduler:` config key it is read from.
    replans: re-run with the time left whenever a retraining job completes (else the finished job's share
        is split equally over the others).
    profiles: its retraining options come from micro-profiling each camera's configs.
    fixed_config: retrains every camera with the deployment's one fixed config, without profiling.
    retrains: False for a scheduler that only serves (no retraining options are built for it).
    forecasts_drift: plans on accuracies forecast one window ahead from each camera's error growth.
    in_comparisons: run by default where schedulers are compared (simulate --scheduler all, capacity).
    """

    name: str
    plan: PlanFunction
    parameters: Mapping[str, str] = field(default_factory=dict)
    replans: bool = False
    profiles: bool = False
    fixed_config: bool = False
    retrains: bool = True
    forecasts_drift: bool = False
    in_comparisons: bool = False

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip() or "," in self.name:
            raise ValueError(f"a scheduler name must be non-empty, no commas or outer spaces: {self.name!r}")
        if self.profiles and self.fixed_config:
            raise ValueError(f"scheduler {self.name!r}: profiled options or a fixed config, not both")
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))

    def parameters_from(self, settings: Mapping[str, object]) -> dict[str, object]:
        """Its plan parameters read from the `scheduler:` config keys in `settings` (a key absent there is
        left out, so the plan's default applies)."""
        return {parameter: settings[key] for parameter, key in self.parameters.items() if key in settings}


_registry: dict[str, Scheduler] = {}


def register_scheduler(entry: Scheduler) -> Scheduler:
    """Add a scheduler (registering the same one again is a no-op; another under a taken name is an error)."""
    known = _registry.get(entry.name)
    if known is not None and known != entry:
        raise ValueError(f"a different scheduler is already registered as {entry.name!r}")
    _registry[entry.name] = entry
    return entry


def scheduler(name: str) -> Scheduler:
    """The registered scheduler `name`; ValueError listing the registered ones if there is none."""
    try:
        return _registry[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; choose from {', '.join(scheduler_names())}") from None


def scheduler_names() -> tuple[str, ...]:
    """Every registered scheduler, in registration order."""
    return tuple(_registry)


def compared_scheduler_names() -> tuple[str, ...]:
    """The schedulers run by default where schedulers are compared (those with `in_comparisons`)."""
    return tuple(name for name, entry in _registry.items() if entry.in_comparisons)


# ------------------------------------------------------------------------------------------ built-ins
def _inference_fraction(parameters: Mapping[str, object]) -> float:
    value = parameters.get("inference_fraction")
    return 0.5 if value is None else float(value)  # type: ignore[arg-type]


def _fixed_config(parameters: Mapping[str, object]) -> str | None:
    value = parameters.get("fixed_config")
    return None if value is None else str(value)


# The fixed config is read from `retraining_config`, which the controller resolves to the grid's middle
# entry where the config leaves it unset (DeploymentConfig.scheduler_settings).
register_scheduler(Scheduler(
    "thief", lambda problem, _: thief(problem),
    replans=True, profiles=True, forecasts_drift=True, in_comparisons=True))
register_scheduler(Scheduler(
    "fair", lambda problem, p: fair(problem, _fixed_config(p), _inference_fraction(p)),
    parameters={"inference_fraction": "fair_inference_weight", "fixed_config": "retraining_config"},
    fixed_config=True, in_comparisons=True))
register_scheduler(Scheduler(
    "uniform", lambda problem, p: uniform(problem, _fixed_config(p), _inference_fraction(p)),
    parameters={"inference_fraction": "uniform_inference_fraction", "fixed_config": "retraining_config"},
    fixed_config=True, in_comparisons=True))
register_scheduler(Scheduler(
    "noretrain", lambda problem, _: noretrain(problem), retrains=False, in_comparisons=True))
register_scheduler(Scheduler(
    "thief-reference", lambda problem, _: thief_reference(problem), replans=True, profiles=True))
register_scheduler(Scheduler(
    "ekya", lambda problem, _: ekya(problem), replans=True, profiles=True, forecasts_drift=True))
