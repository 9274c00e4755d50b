"""A faithful, slow reference of the original thief scheduler, for comparison only.

As in the original code: start from the fair split; alternate PickConfigs and allocation 3 times; for
every (thief, victim) pair try every steal size (k x delta while the victim has it) without stopping
early, re-pick every camera's config (a Python loop over cameras and configs) and re-estimate the total
with the exact objective, keeping the best allocation seen. Jobs are capped at one GPU (placement), and
the step follows lattice.py (the fair share when it is below delta), as in the fast thief.
"""

from __future__ import annotations

import time

import numpy as np

from .common import build_plan, exact_mean
from .lattice import fair_lattice, job_count
from .objective import FastEvaluator, camera_accuracy
from .profiles import Plan, Problem


def pick_configs(problem: Problem, tr: np.ndarray) -> list[str | None]:
    """Each camera's best config at its training share by its own estimate (None if none beats
    keeping the current model)."""
    T = problem.window
    thr = problem.throughput
    out: list[str | None] = []
    for v, cam in enumerate(problem.cameras):
        best, best_cfg = cam.accuracy, None
        rate = thr(float(tr[v]))
        for o in cam.options:
            tau = 0.0 if o.gpu_seconds == 0 else (o.gpu_seconds / rate if rate > 0 else float("inf"))
            acc = camera_accuracy(cam.accuracy, 1.0, o.end_accuracy, tau, T)
            if acc > best + 1e-12:
                best, best_cfg = acc, o.config
        out.append(best_cfg)
    return out


def thief_reference(problem: Problem, *, iterations: int = 3, deadline_s: float | None = None) -> Plan:
    """deadline_s stops the search early (returning the best so far); for benchmarks only."""
    t0 = time.perf_counter()
    n = len(problem.cameras)
    ev = FastEvaluator(problem)
    lat = fair_lattice(problem)
    d, cap = lat.delta, problem.job_cap
    inf = np.full(n, lat.fair)
    tr = np.array([lat.fair if c.options else 0.0 for c in problem.cameras])
    jobs = [(v, k) for v, c in enumerate(problem.cameras) for k in (False, True) if not k or c.options]
    assert len(jobs) == job_count(problem)
    cfgs = pick_configs(problem, tr)
    best = exact_mean(problem, inf, tr, cfgs, ev) if n else 0.0
    for _ in range(iterations if problem.gpus > 0 else 0):
        for tv, tk in jobs:
            for vv, vk in jobs:
                if (tv, tk) == (vv, vk):
                    continue
                ti, tt = inf.copy(), tr.copy()
                best_alloc = None
                while deadline_s is None or time.perf_counter() - t0 < deadline_s:
                    src = tt if vk else ti
                    dst = tt if tk else ti
                    if src[vv] < d - 1e-9 or dst[tv] + d > cap + 1e-9:
                        break
                    src[vv] -= d
                    dst[tv] += d
                    if not vk and problem.a_min > 0:
                        acc_inf = problem.cameras[vv].accuracy * problem.inference.scale(float(ti[vv]))
                        if acc_inf < problem.a_min - 1e-12:
                            break
                    c = pick_configs(problem, tt)
                    acc = exact_mean(problem, ti, tt, c, ev)
                    if acc > best + 1e-12:
                        best, best_alloc = acc, (ti.copy(), tt.copy(), c)
                if best_alloc is not None:
                    inf, tr, cfgs = best_alloc
        cfgs = pick_configs(problem, tr)
    return build_plan(problem, "thief-reference", inf, tr, cfgs, time.perf_counter() - t0, ev)
