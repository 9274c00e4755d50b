"""Turning raw shares and configs into a scored, placed Plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .objective import FastEvaluator
from .placement import device_loads, place
from .profiles import EPS, CameraAllocation, Plan, Problem


def job_arrays(problem: Problem, configs: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """end accuracies, GPU-seconds and has-job mask for the chosen configs."""
    n = len(problem.cameras)
    end = np.array([c.accuracy for c in problem.cameras], dtype=float)
    work = np.zeros(n)
    has = np.zeros(n, dtype=bool)
    for v, (cam, cfg) in enumerate(zip(problem.cameras, configs)):
        if cfg is None:
            continue
        opt = next((o for o in cam.options if o.config == cfg), None)
        if opt is None:
            continue
        end[v], work[v], has[v] = opt.end_accuracy, opt.gpu_seconds, True
    return end, work, has


def exact_mean(problem: Problem, inf: np.ndarray, tr: np.ndarray, configs: Sequence[str | None],
               evaluator: FastEvaluator | None = None) -> float:
    end, work, has = job_arrays(problem, configs)
    ev = evaluator or FastEvaluator(problem)
    return ev.mean(np.asarray(inf, float), np.asarray(tr, float), end, work, has)


def redistribute_idle(problem: Problem, inf: np.ndarray, tr: np.ndarray,
                      configs: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Training shares without a job go to the others by the original's equal split (capped per job)."""
    inf = np.asarray(inf, float).copy()
    tr = np.asarray(tr, float).copy()
    has = np.array([c is not None for c in configs], dtype=bool)
    idle = float(tr[~has].sum())
    tr[~has] = 0.0
    cap = problem.job_cap
    for _ in range(4):
        if idle <= EPS:
            break
        room_i = np.maximum(cap - inf, 0.0)
        room_t = np.where(has, np.maximum(cap - tr, 0.0), 0.0)
        takers = int((room_i > EPS).sum() + (room_t > EPS).sum())
        if takers == 0:
            break
        each = idle / takers
        gi = np.minimum(room_i, each)
        gt = np.minimum(room_t, each)
        inf += gi
        tr += gt
        idle -= float(gi.sum() + gt.sum())
    return inf, tr


def build_plan(problem: Problem, scheduler: str, inf: np.ndarray, tr: np.ndarray,
               configs: Sequence[str | None], plan_seconds: float = 0.0,
               evaluator: FastEvaluator | None = None,
               devices: tuple[Sequence[int], Sequence[int]] | None = None) -> Plan:
    """Redistribute idle training shares, place jobs on devices, and score exactly.

    `devices` (per camera: the inference job's device, the training job's) is a placement the
    scheduler already chose; it is used when there is no idle share to redistribute and it packs,
    otherwise jobs are placed by first-fit decreasing (which shrinks what does not fit)."""
    has_idle = any(cfg is None and t > EPS for cfg, t in zip(configs, tr))
    inf, tr = redistribute_idle(problem, inf, tr, configs)
    allocs = [
        CameraAllocation(c.name, cfg, float(i), float(t) if cfg is not None else 0.0)
        for c, cfg, i, t in zip(problem.cameras, configs, inf, tr)
    ]
    placed = _with_devices(allocs, problem.gpus, devices) if devices is not None and not has_idle else None
    if placed is not None:
        ok = True
    else:
        placed, ok = place(allocs, problem.gpus)
    inf = np.array([a.inference_share for a in placed])
    tr = np.array([a.training_share for a in placed])
    acc = exact_mean(problem, inf, tr, configs, evaluator)
    return Plan(scheduler, problem.gpus, problem.window, tuple(placed), acc, plan_seconds, ok)


def _with_devices(allocs: list[CameraAllocation], gpus: int,
                  devices: tuple[Sequence[int], Sequence[int]]) -> list[CameraAllocation] | None:
    """The allocations on the given devices, or None if that placement does not pack."""
    dev_i, dev_t = devices
    out = []
    for a, di, dt in zip(allocs, dev_i, dev_t):
        di = int(di) if a.inference_share > EPS else None
        dt = int(dt) if a.training_share > EPS else None
        if any(d is not None and not 0 <= d < gpus for d in (di, dt)):
            return None
        out.append(replace(a, inference_device=di, training_device=dt))
    if any(load > 1.0 + 1e-7 for load in device_loads(out, gpus)):
        return None
    return out
