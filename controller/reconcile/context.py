"""What the current window's plan was made from: kept in memory, rebuilt at the next window after a
crash (everything that must survive one is in ControllerState)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from controller.planner import Plan, Problem, RetrainOption
from controller.planner.microprofile import CostCorrection
from controller.reconcile.ports import ProfiledOptions


@dataclass
class Trial:
    """The micro-profiler's best trial model for a camera, to be served if it wins by the margin."""

    checkpoint: Path
    accuracy: float
    replaced_accuracy: float
    kind: str | None


@dataclass
class WindowContext:
    window: int
    started: float  # wall-clock start of the window
    problem: Problem | None = None
    plan: Plan | None = None
    data: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # camera -> (train.npz, test.npz)
    options: dict[str, dict[str, RetrainOption]] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)  # cameras whose retraining this window is over
    started_jobs: set[str] = field(default_factory=set)
    redistributed: set[str] = field(default_factory=set)  # finished cameras whose share was handed on
    trials: dict[str, Trial] = field(default_factory=dict)
    cost: CostCorrection = field(default_factory=CostCorrection)  # applied to predicted job costs (the ledger's)

    def job_pending(self, camera: str) -> bool:
        """The plan still means to start a retraining job for this camera."""
        if self.plan is None or camera in self.finished or camera in self.started_jobs:
            return False
        return any(a.camera == camera and a.training_share > 0 and a.config for a in self.plan.allocations)


@dataclass
class AheadProfile:
    """A camera's micro-profile taken before its window closed, and the serving versions it is valid for
    (the one it profiled and, if served, its own trial model)."""

    profile: ProfiledOptions
    versions: set[int]
    chunks: int = 0  # spooled chunks of the window it was taken on (a later run with no new data is skipped)
