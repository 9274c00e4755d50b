"""The "ekya" optimiser: a global, device-aware search beside the paper's thief.

1. Tables (grid.py): per camera, the separable estimate of its window accuracy for every inference and
   training share on a fine grid (1/100 to 1/10 GPU, the finest the budget allows), with the config
   chosen jointly, and a price on the share a finished job hands back to the others.
2. Global knapsack: the exact best allocation of the G GPUs under that estimate (DP over cameras), at
   price 0 (the paper's own-camera estimate) and at the knapsack's own shadow price (what a GPU is worth
   at the margin; a finished job's share is worth that much for the rest of the window), and half of it.
3. Packing (packing.py): each candidate is placed on devices so that every job fits on one device and
   no device holds more than one GPU (first-fit decreasing, else a per-device knapsack repair).
4. The best candidate by the exact objective is refined with thief-style moves scored by the exact
   objective, device-aware (refine.py).
5. The plan is never worse (on the exact objective) than noretrain or thief's Algorithm 1 start, the fair
   split, when those pack: they are candidates too.
"""

from __future__ import annotations

import time

import numpy as np

from .baselines import noretrain
from .common import build_plan, exact_mean
from .grid import build_tables, choose_units, global_allocation, joint_values
from .objective import FastEvaluator
from .packing import pack
from .profiles import Plan, Problem
from .refine import GridScorer, GridState, refine
from .separable import SeparableModel


def ekya(problem: Problem, *, units: int | None = None, price_factors: tuple[float, ...] = (0.0, 0.5, 1.0),
         rounds: int | None = None, screen: int | None = None, time_limit: float | None = 5.0,
         with_thief: bool = True, name: str = "ekya") -> Plan:
    """Plan one window (or the time left of it). units: grid steps per GPU (default: the finest that
    keeps the global DP cheap); rounds / screen: refinement effort (defaults scale with the size);
    time_limit: a safety stop for the refinement (seconds from the start); with_thief: also run the
    thief (Algorithm 1) and keep its plan when it scores higher, so ekya is never below thief."""
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + time_limit
    n, G = len(problem.cameras), problem.gpus
    ev = FastEvaluator(problem)
    if n == 0 or G <= 0:
        return build_plan(problem, name, np.zeros(n), np.zeros(n), [None] * n, time.perf_counter() - t0, ev)
    model = SeparableModel(problem)
    m = units or choose_units(problem)
    budget = G * m
    jobs = 2 * n
    rounds = rounds if rounds is not None else (30 if jobs <= 60 else 12)
    screen = screen if screen is not None else (48 if jobs <= 60 else 32)

    base_tables = build_tables(problem, model, m, 0.0)
    V0, A0 = joint_values(base_tables)
    li, lt, _, lam = global_allocation(base_tables, budget, V0, A0)
    best = None  # (exact, tables, state)
    for f in price_factors:
        if f == 0.0:
            tab, V, A, a_li, a_lt = base_tables, V0, A0, li, lt
        else:
            if lam <= 0:
                continue
            tab = build_tables(problem, model, m, f * lam)
            V, A = joint_values(tab)
            a_li, a_lt, _, _ = global_allocation(tab, budget, V, A)
        p_li, p_lt, dev_i, dev_t, _ = pack(tab, a_li, a_lt, G, V=V, A=A)
        st = GridState(p_li, p_lt, dev_i, dev_t)
        scorer = GridScorer(problem, model, tab)
        acc = float(scorer.score(st.li[None], st.lt[None])[0])
        if best is None or acc > best[0] + 1e-12:
            best = (acc, scorer, st)
    acc, scorer, st = best
    st, acc = refine(scorer, st, G, rounds=rounds, screen=screen, deadline=deadline)
    cfgs = scorer.configs(st.li, st.lt)
    lt_used = np.where([c is not None for c in cfgs], st.lt, 0)
    plan = build_plan(problem, name, st.li / m, lt_used / m, cfgs, 0.0, ev, devices=(st.dev_i, st.dev_t))
    others = [noretrain(problem)]
    if with_thief:
        from .thief import thief

        others.append(thief(problem))
    plan = best_of(plan, others)
    return _timed(plan, t0)


def best_of(plan: Plan, others: list[Plan]) -> Plan:
    """The plan, or another that packs and scores higher on the exact objective (under plan's name)."""
    best = plan
    for o in others:
        if o.placement_ok and (not best.placement_ok or o.planned_accuracy > best.planned_accuracy + 1e-12):
            best = o
    if best is plan:
        return plan
    return Plan(plan.scheduler, best.gpus, best.window, best.allocations, best.planned_accuracy,
                plan.plan_seconds, True)


def _timed(plan: Plan, t0: float) -> Plan:
    return Plan(plan.scheduler, plan.gpus, plan.window, plan.allocations, plan.planned_accuracy,
                time.perf_counter() - t0, plan.placement_ok)


__all__ = ["ekya", "exact_mean"]
