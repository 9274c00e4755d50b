"""A fine share grid for global search: per-camera utility tables and a multiple-choice knapsack DP.

Shares are whole units of 1/m GPU (m = `units`). Per camera v, inference level a and training level b
(b = 0: no retraining job), the separable estimate of the camera's window accuracy is

    U[v, a, b] = max over configs c of  S(a) x avg_c(b) + price x share(b) x (1 - frac_c(b))

where S is the inference factor, avg_c(b) the base accuracy averaged over the window when config c
trains at share b (the old model until it finishes at frac_c(b) of the window, the new one after), and
the price term values the share-time a finished job hands back to the others (the exact objective's
redistribution of completed shares; price 0 is the original's own-camera estimate, where the config is
exactly the paper's PickConfigs choice). U[v, a, 0] = base x S(a). Configs that cannot finish in the
window or do not beat the serving model are not candidates.

Given the tables, the best allocation of B units over cameras (sum of inference + training levels <= B)
is a multiple-choice knapsack: an exact DP over cameras (numpy, O(N x B x X) with X a camera's largest
cost). The same DP with budget m solves one device's share given the jobs placed on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .profiles import EPS, Problem
from .separable import NO_CONFIG, SeparableModel

NEG = -np.inf


@dataclass
class GridTables:
    """U[v, a, b] and the option index chosen there (NO_CONFIG: none), on levels of 1/m GPU."""

    m: int
    U: np.ndarray  # (N, Ki, Kt)
    cfg: np.ndarray  # (N, Ki, Kt) option index or NO_CONFIG
    imin: np.ndarray  # (N,) lowest inference level allowed (the a_min floor)
    price: float

    @property
    def ki(self) -> int:
        return self.U.shape[1]

    @property
    def kt(self) -> int:
        return self.U.shape[2]


def job_cap_units(problem: Problem, m: int) -> int:
    """Largest job in units: a job runs on one device (share <= 1) and within the problem's cap."""
    return max(int(math.floor(min(problem.job_cap, 1.0) * m + EPS)), 0)


def inference_levels(problem: Problem, m: int) -> int:
    """Inference levels worth having: up to the share where the factor reaches 1 (and the job cap)."""
    cap = job_cap_units(problem, m)
    full = int(math.ceil(problem.inference.full_share * m - EPS))
    return min(max(full, 0), cap) + 1


def choose_units(problem: Problem, work: float = 6e6, choices: tuple[int, ...] = (100, 50, 40, 25, 20, 10)) -> int:
    """The finest grid whose global DP stays within about `work` elementary steps."""
    n = max(len(problem.cameras), 1)
    for m in choices:
        ki = inference_levels(problem, m)
        kt = job_cap_units(problem, m) + 1
        x = ki + kt - 1
        b = max(problem.gpus, 0) * m + 1
        if n * x * b <= work:
            return m
    return choices[-1]


def build_tables(problem: Problem, model: SeparableModel, m: int, price: float = 0.0) -> GridTables:
    n = model.n
    ki = inference_levels(problem, m)
    kt = job_cap_units(problem, m) + 1
    si = np.arange(ki) / m
    st = np.arange(kt) / m
    S = problem.inference.scale_array(si)  # (Ki,)
    keep = model.base[:, None] * S[None, :]  # (N, Ki)
    U = np.full((n, ki, kt), NEG)
    cfg = np.full((n, ki, kt), NO_CONFIG, dtype=np.int16 if model.width < 30000 else np.int32)
    U[:, :, 0] = keep
    T = float(problem.window)
    if model.width > 0 and T > 0 and kt > 1:
        rate = problem.throughput.array(st[1:])  # (Kt-1,)
        cost = model.cost[:, :, None]
        tau = model.wall_time(cost, rate[None, None, :])
        frac = np.clip(tau / T, 0.0, 1.0)
        end = model.end[:, :, None]
        avg = model.base[:, None, None] * frac + end * (1.0 - frac)  # (N, C, Kt-1)
        ok = (tau < T) & np.isfinite(cost) & (end > model.base[:, None, None] + 1e-12)
        if price != 0.0:
            u = avg[:, :, None, :] * S[None, None, :, None] + (price * st[1:] * (1.0 - frac))[:, :, None, :]
            u = np.where(ok[:, :, None, :], u, NEG)  # (N, C, Ki, Kt-1)
            arg = np.argmax(u, axis=1)
            best = np.take_along_axis(u, arg[:, None], axis=1)[:, 0]
        else:  # S factors out: the choice is PickConfigs' at the training share alone
            avg = np.where(ok, avg, NEG)
            a1 = np.argmax(avg, axis=1)  # (N, Kt-1)
            b1 = np.take_along_axis(avg, a1[:, None], axis=1)[:, 0]
            with np.errstate(invalid="ignore"):
                best = b1[:, None, :] * S[None, :, None]
            best = np.where(np.isfinite(b1)[:, None, :], best, NEG)
            arg = np.broadcast_to(a1[:, None, :], best.shape)
        U[:, :, 1:] = best
        cfg[:, :, 1:] = np.where(np.isfinite(best), arg, NO_CONFIG)
    imin = floor_levels(problem, model.base, S)
    if int(imin.sum()) > max(problem.gpus, 0) * m:  # the floors cannot all be held: drop them
        imin[:] = 0
    for v in range(n):
        if imin[v] > 0:
            U[v, :imin[v], :] = NEG
    return GridTables(m, U, cfg, imin, price)


def floor_levels(problem: Problem, base: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Per camera, the lowest inference level keeping base x S >= a_min (or the best factor's level when
    the floor cannot be held)."""
    n = len(base)
    out = np.zeros(n, dtype=int)
    if problem.a_min <= 0 or len(S) == 0:
        return out
    ok = base[:, None] * S[None, :] >= problem.a_min - 1e-12
    top = int(np.argmax(S >= S.max() - 1e-12))
    for v in range(n):
        idx = np.flatnonzero(ok[v])
        out[v] = int(idx[0]) if idx.size else top
    return out


def joint_values(t: GridTables) -> tuple[np.ndarray, np.ndarray]:
    """V[v, x] = best U[v, a, b] with a + b = x, and the inference level a achieving it (-1: none)."""
    n, ki, kt = t.U.shape
    X = ki + kt - 1
    V = np.full((n, X), NEG)
    A = np.full((n, X), -1, dtype=int)
    for a in range(ki):
        seg = t.U[:, a, :]
        cur = V[:, a:a + kt]
        better = seg > cur
        V[:, a:a + kt] = np.where(better, seg, cur)
        A[:, a:a + kt] = np.where(better, a, A[:, a:a + kt])
    return V, A


def mckp(values: np.ndarray, budget: int, *, curve: bool = False):
    """Multiple-choice knapsack: item v takes cost x with value values[v, x] (-inf: not allowed); total
    cost <= budget. Returns the best total and each item's cost (exact DP; -inf when infeasible), and
    with curve=True also the best total at every budget 0..budget."""
    n, X1 = values.shape
    budget = max(int(budget), 0)
    if n == 0:
        return (0.0, np.zeros(0, dtype=int), np.zeros(budget + 1)) if curve else (0.0, np.zeros(0, dtype=int))
    X1 = min(X1, budget + 1)
    vals = values[:, :X1]
    F = np.zeros(budget + 1)
    pad = np.full(X1 - 1, NEG)
    choice = np.zeros((n, budget + 1), dtype=np.int32)
    rows = np.arange(budget + 1)
    for v in range(n):
        win = sliding_window_view(np.concatenate([pad, F]), X1)  # win[b, j] = F[b + j - (X1 - 1)]
        M = win + vals[v, ::-1][None, :]
        j = np.argmax(M, axis=1)
        F = M[rows, j]
        choice[v] = (X1 - 1) - j
    total = float(F[budget])
    xs = np.zeros(n, dtype=int)
    b = budget
    for v in range(n - 1, -1, -1):
        x = int(choice[v, b])
        xs[v] = x
        b -= x
    return (total, xs, F) if curve else (total, xs)


def global_allocation(t: GridTables, budget: int, V: np.ndarray | None = None, A: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Best inference / training levels per camera with at most `budget` units in all (the separable
    estimate, ignoring devices), and the marginal value of a whole GPU over the window at that budget
    (the knapsack's shadow price: what a share handed back is worth)."""
    if V is None or A is None:
        V, A = joint_values(t)
    total, xs, F = mckp(V, budget, curve=True)
    n = t.U.shape[0]
    li = np.maximum(A[np.arange(n), xs], 0)
    lt = xs - li
    k = max(1, t.m // 10)
    lam = 0.0
    if budget >= k and np.isfinite(F[budget - k]):
        lam = max(float(F[budget] - F[budget - k]) * t.m / k, 0.0)
    return li.astype(int), lt.astype(int), total, lam
