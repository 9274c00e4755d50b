"""The pure planning core: profiles in, plans out (no file or network I/O, no ML frameworks).

Entry points: `api.plan(problem, scheduler, **parameters)` for a window (the schedulers and their
parameters are registered in `schedulers`), `api.replan(problem, statuses, elapsed)` on a job completion,
`objective.evaluate` for the exact window objective, `microprofile.predict_options` to turn micro-profile
measurements into retraining options, `simulator.simulate` for what-if runs.
"""

from .api import plan, remaining_problem, replan
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
from .schedulers import Scheduler, register_scheduler, scheduler, scheduler_names

__all__ = ["CameraAllocation", "CameraState", "CameraStatus", "InferenceProfile", "Plan", "Problem",
           "RetrainOption", "Scheduler", "ThroughputCurve", "WindowOutcome", "evaluate", "plan",
           "register_scheduler", "remaining_problem", "replan", "scheduler", "scheduler_names"]
