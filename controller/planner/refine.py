"""Thief-style local refinement on the fine grid, scored by the exact objective, device-aware.

A move takes `size` units from one job (the victim) and gives them to another (the thief), as in
Algorithm 1, with the thief's config re-picked from the tables. Moves keep every device within one GPU:
the thief must have room on its device, share the victim's device, or (holding nothing yet) move onto
the victim's device. Each round screens all (thief, victim, size) moves by their separable gain (table
lookups, numpy), scores the `screen` best with the exact objective in one batch (event by event, with
the redistribution of completed shares), and applies the best one, or the improving moves on disjoint
cameras together when that is better still. Rounds stop when no screened move improves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .grid import GridTables
from .objective import batch_mean
from .profiles import Problem
from .separable import SeparableModel

GAIN_EPS = 1e-12


@dataclass
class GridState:
    li: np.ndarray  # inference level per camera (units of 1/m)
    lt: np.ndarray  # training level per camera (0: no job)
    dev_i: np.ndarray  # device per inference job (kept even at level 0)
    dev_t: np.ndarray  # device per training job

    def copy(self) -> GridState:
        return GridState(self.li.copy(), self.lt.copy(), self.dev_i.copy(), self.dev_t.copy())


class GridScorer:
    """The exact objective (equal-split redistribution) of level arrays, batched."""

    def __init__(self, problem: Problem, model: SeparableModel, t: GridTables) -> None:
        self.problem, self.model, self.t = problem, model, t
        self.cols = np.arange(model.n)

    def arrays(self, LI: np.ndarray, LT: np.ndarray):
        t, model = self.t, self.model
        cols = np.broadcast_to(self.cols, LI.shape)
        c = t.cfg[cols, LI, LT].astype(int)
        has = (c >= 0) & (LT > 0)
        cc = np.maximum(c, 0)
        end = np.where(has, model.end[cols, cc] if model.width else 0.0, model.base[cols])
        work = np.where(has, model.cost[cols, cc] if model.width else 0.0, 0.0)
        return LI / t.m, np.where(has, LT / t.m, 0.0), end, work, has

    def score(self, LI: np.ndarray, LT: np.ndarray) -> np.ndarray:
        inf, tr, end, work, has = self.arrays(LI, LT)
        return batch_mean(self.problem, inf, tr, end, work, has)

    def configs(self, li: np.ndarray, lt: np.ndarray) -> list[str | None]:
        c = self.t.cfg[self.cols, li, lt].astype(int)
        return [self.model.config_name(v, int(c[v])) if lt[v] > 0 and c[v] >= 0 else None
                for v in range(self.model.n)]


def default_sizes(m: int, cap_units: int) -> list[int]:
    """Steal sizes in units: fine steps, then roughly geometric up to a whole job."""
    out, s = [], 1
    while s <= cap_units:
        out.append(s)
        s = s + 1 if s < 4 else int(round(s * 1.5))
    return out


def refine(scorer: GridScorer, st: GridState, gpus: int, *, rounds: int = 40, screen: int = 64,
           sizes: list[int] | None = None, deadline: float | None = None) -> tuple[GridState, float]:
    """Improve `st` by exact-scored thief moves; returns the state and its exact objective."""
    t = scorer.t
    U, m = t.U, t.m
    n = U.shape[0]
    ki, kt = t.ki, t.kt
    st = st.copy()
    cur = float(scorer.score(st.li[None], st.lt[None])[0])
    if n == 0 or gpus <= 0:
        return st, cur
    sizes = sizes or default_sizes(m, max(ki, kt) - 1)
    cams = np.concatenate([np.arange(n), np.arange(n)])
    is_t = np.concatenate([np.zeros(n, bool), np.ones(n, bool)])
    J = 2 * n
    same = cams[:, None] == cams[None, :]
    eye = np.eye(J, dtype=bool)
    for _ in range(rounds):
        if deadline is not None and time.perf_counter() > deadline:
            break
        li, lt = st.li, st.lt
        lvl = np.concatenate([li, lt])
        dev = np.concatenate([st.dev_i, st.dev_t])
        load = np.zeros(gpus, dtype=int)
        np.add.at(load, dev, lvl)
        u0 = U[np.arange(n), li, lt]
        u0j = np.concatenate([u0, u0])
        cand = []  # (gain, size, thief, victim)
        for s in sizes:
            # thief side
            ti = np.concatenate([np.minimum(li + s, ki - 1), li])
            tt = np.concatenate([lt, np.minimum(lt + s, kt - 1)])
            t_ok = np.concatenate([li + s <= ki - 1, lt + s <= kt - 1])
            if not t_ok.any():
                continue
            vi = np.concatenate([np.maximum(li - s, 0), li])
            vt = np.concatenate([lt, np.maximum(lt - s, 0)])
            v_ok = np.concatenate([li - s >= t.imin, lt - s >= 0])
            if not v_ok.any():
                continue
            with np.errstate(invalid="ignore"):
                g_t = U[cams, ti, tt] - u0j
                g_v = U[cams, vi, vt] - u0j
                # same camera: inference <- training (thief inference) or training <- inference
                si = np.concatenate([np.minimum(li + s, ki - 1), np.maximum(li - s, 0)])
                sj = np.concatenate([np.maximum(lt - s, 0), np.minimum(lt + s, kt - 1)])
                g_same = U[cams, si, sj] - u0j  # indexed by the thief
                g = g_t[:, None] + g_v[None, :]
            g = np.where(same, g_same[:, None], g)
            room = (load[dev] + s <= m) | (lvl == 0)  # thief fits where it is, or moves to the victim
            fits = room[:, None] | (dev[:, None] == dev[None, :])
            valid = t_ok[:, None] & v_ok[None, :] & ~eye & fits & np.isfinite(g)
            if not valid.any():
                continue
            tj, vj = np.nonzero(valid)
            cand.append((g[tj, vj], np.full(tj.size, s), tj, vj))
        if not cand:
            break
        gains = np.concatenate([c[0] for c in cand])
        ss = np.concatenate([c[1] for c in cand])
        tjs = np.concatenate([c[2] for c in cand])
        vjs = np.concatenate([c[3] for c in cand])
        k = min(screen, gains.size)
        top = np.argpartition(-gains, k - 1)[:k] if k < gains.size else np.arange(gains.size)
        top = top[np.argsort(-gains[top], kind="stable")]
        LI = np.repeat(li[None], k, axis=0)
        LT = np.repeat(lt[None], k, axis=0)
        r = np.arange(k)
        s_, tj_, vj_ = ss[top], tjs[top], vjs[top]
        for jj, sign in ((tj_, 1), (vj_, -1)):
            tr_job = is_t[jj]
            c = cams[jj]
            np.add.at(LT, (r[tr_job], c[tr_job]), sign * s_[tr_job])
            np.add.at(LI, (r[~tr_job], c[~tr_job]), sign * s_[~tr_job])
        vals = scorer.score(LI, LT)
        order = np.argsort(-vals, kind="stable")
        if vals[order[0]] <= cur + GAIN_EPS:
            break
        best = int(order[0])
        # combine improving moves on disjoint cameras (and within device room)
        comb = st.copy()
        cload = load.copy()
        used: set[int] = set()
        applied = 0
        for q in order:
            if vals[q] <= cur + GAIN_EPS:
                break
            a, b = int(tj_[q]), int(vj_[q])
            touched = {int(cams[a]), int(cams[b])}
            if touched & used:
                continue
            if not _apply(comb, cload, a, b, int(s_[q]), n, m, check=True):
                continue
            used |= touched
            applied += 1
        chosen = st.copy()
        _apply(chosen, load.copy(), int(tj_[best]), int(vj_[best]), int(s_[best]), n, m, check=False)
        if applied > 1:
            cv = float(scorer.score(comb.li[None], comb.lt[None])[0])
            if cv > vals[best]:
                st, cur = comb, cv
                continue
        st, cur = chosen, float(vals[best])
    return st, cur


def _apply(st: GridState, load: np.ndarray, thief: int, victim: int, s: int, n: int, m: int, check: bool) -> bool:
    """Move s units from job `victim` to job `thief` (job j < n: camera j's inference, else training)."""
    def get(j):
        return (st.li, st.dev_i, j) if j < n else (st.lt, st.dev_t, j - n)

    tl, td, tc = get(thief)
    vl, vd, vc = get(victim)
    dest = int(vd[vc]) if tl[tc] == 0 else int(td[tc])
    if check and dest != vd[vc] and load[dest] + s > m:
        return False
    td[tc] = dest
    load[dest] += s
    load[vd[vc]] -= s
    tl[tc] += s
    vl[vc] -= s
    return True
