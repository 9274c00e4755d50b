"""The planner's entry points: plan a window, and re-plan when a job completes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from . import schedulers
from .objective import CameraStatus
from .profiles import CameraState, Plan, Problem, RetrainOption


def plan(problem: Problem, scheduler: str = "thief", **parameters: object) -> Plan:
    """Plan one window with the registered scheduler `scheduler` (controller/planner/schedulers.py).
    `parameters`: its plan parameters (fair/uniform: fixed_config, inference_fraction); a parameter the
    scheduler does not take is ignored."""
    return schedulers.scheduler(scheduler).plan(problem, parameters)


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
           scheduler: str = "thief", **parameters: object) -> Plan:
    """Re-run the scheduler on a completion with the time left (problem: the window's original one)."""
    return plan(remaining_problem(problem, statuses, elapsed), scheduler, **parameters)
