"""The planner's entry points: plan a window, and re-plan when a job completes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .baselines import fair, noretrain, uniform
from .ekya import ekya
from .objective import CameraStatus
from .profiles import CameraState, Plan, Problem, RetrainOption
from .thief import thief
from .thief_reference import thief_reference

SCHEDULERS = ("thief", "fair", "uniform", "noretrain", "thief-reference", "ekya")
REPLANNING = ("thief", "thief-reference", "ekya")  # schedulers re-run on every completion


def plan(problem: Problem, scheduler: str = "thief", *, fixed_config: str | None = None,
         inference_fraction: float | None = None) -> Plan:
    """Plan one window. fixed_config / inference_fraction are for fair and uniform."""
    if scheduler == "thief":
        return thief(problem)
    if scheduler == "thief-reference":
        return thief_reference(problem)
    if scheduler == "ekya":
        return ekya(problem)
    if scheduler == "fair":
        return fair(problem, fixed_config, 0.5 if inference_fraction is None else inference_fraction)
    if scheduler == "uniform":
        return uniform(problem, fixed_config, 0.5 if inference_fraction is None else inference_fraction)
    if scheduler == "noretrain":
        return noretrain(problem)
    raise ValueError(f"unknown scheduler {scheduler!r}; choose from {', '.join(SCHEDULERS)}")


def remaining_problem(problem: Problem, statuses: Sequence[CameraStatus], elapsed: float) -> Problem:
    """The problem for the time left: finished cameras have no options, a running job only its own
    config with the remaining GPU-seconds (planned cost x (1 - progress)) and no start-up latency once
    it has made progress, the others all options."""
    by_name = {s.name: s for s in statuses}
    cams: list[CameraState] = []
    for cam in problem.cameras:
        st = by_name.get(cam.name)
        if st is None:
            cams.append(cam)
            continue
        if st.finished:
            cams.append(CameraState(cam.name, st.accuracy, ()))
        elif st.running is not None:
            opt = next((o for o in cam.options if o.config == st.running), None)
            left: tuple[RetrainOption, ...] = ()
            if opt is not None:
                left = (replace(opt, gpu_seconds=max(opt.gpu_seconds * (1.0 - st.progress), 0.0)),)
            # a job that reported progress is past its start-up; its export and load are not counted
            latency = 0.0 if st.progress > 0 else None
            cams.append(CameraState(cam.name, st.accuracy, left, running=st.running, latency=latency))
        else:
            cams.append(CameraState(cam.name, st.accuracy, cam.options))
    return replace(problem, cameras=tuple(cams), window=max(problem.window - elapsed, 0.0))


def replan(problem: Problem, statuses: Sequence[CameraStatus], elapsed: float,
           scheduler: str = "thief") -> Plan:
    """Re-run the scheduler on a completion with the time left (problem: the window's original one)."""
    return plan(remaining_problem(problem, statuses, elapsed), scheduler)
