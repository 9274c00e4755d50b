"""The pure planning core: profiles in, plans out (no file or network I/O, no ML frameworks).

Entry points: `api.plan(problem, scheduler)` for a window, `api.replan(problem, statuses, elapsed)` on a
job completion, `objective.evaluate` for the exact window objective, `microprofile.predict_options` to
turn micro-profile measurements into retraining options, `simulator.simulate` for what-if runs.
"""

from .api import SCHEDULERS, plan, remaining_problem, replan
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

__all__ = ["SCHEDULERS", "CameraAllocation", "CameraState", "CameraStatus", "InferenceProfile", "Plan",
           "Problem", "RetrainOption", "ThroughputCurve", "WindowOutcome", "evaluate", "plan",
           "remaining_problem", "replan"]
