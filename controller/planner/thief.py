"""The thief scheduler (Ekya's Algorithm 1), fast.

Algorithm 1: start from the fair split of the GPUs over all jobs (an inference and a retraining job
per camera); each job in turn is the thief and steals from every other job (the victim) in steps of
delta, with configs re-picked (PickConfigs) after each move, keeping the moves that raise the total.
Like the original code it tries every steal size from a victim and keeps the best, and it repeats the
passes (until nothing improves, where the original stops after 3).

How it is fast (the original takes seconds): (1) PickConfigs is separable across cameras given the
shares, so it is a table over the delta lattice computed once (numpy), never a loop per move; (2) the
search scores a thief's every victim and steal size at once with a batched exact objective (event by
event, closed form, including the redistribution of completed shares), and each thief takes the best
steal until none improves; (3) a separable estimate of the whole search (table lookups, microseconds
per move) gives a second candidate and screens moves when there are many jobs. The result is the best
candidate by the exact objective, so it is at least the fair start's value.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .baselines import noretrain
from .common import build_plan, exact_mean
from .grid import build_tables, choose_units, mckp
from .lattice import fair_lattice
from .objective import FastEvaluator, batch_mean
from .packing import pack
from .profiles import Plan, Problem
from .refine import GridScorer, GridState, refine
from .separable import SeparableModel

GAIN_EPS = 1e-12


def thief(problem: Problem, *, max_passes: int = 3, price_rounds: int | None = None, exact: bool = True,
          polish_separable: bool | None = None, exact_jobs: int = 48, screen: int = 64,
          global_iters: int = 12, knapsack: bool = True, pack_devices: bool = True,
          repair_rounds: int = 8, both_starts: bool | None = None) -> Plan:
    """Plan one window (or the time left of it) with Algorithm 1.

    Candidates on the thief's lattice (the fair start plus whole steps of delta), with PickConfigs'
    configs throughout:
    - Algorithm 1 on the separable estimate (price 0: the original's own-camera estimate;
      `price_rounds` > 0 adds rounds with a shadow price on the share a finished job hands back;
      default 0, or 1 when there are more than `exact_jobs` jobs);
    - with `knapsack`, the best lattice allocation under that estimate with a shared budget (an exact
      knapsack over cameras: every allocation on the lattice with the fair split's total is reachable
      by steals, so this is the best Algorithm 1 could reach on the estimate), at price 0 and at the
      knapsack's shadow price.
    Phase 2 (exact=True) runs thief moves scored on the exact objective from the fair start, and also
    from the best candidate when `both_starts` (default: on large problems) (with at most `exact_jobs`
    jobs, every job as thief in turn takes the best steal
    over all victims and sizes until no steal improves, at most max_passes passes; with more jobs, up
    to `global_iters` rounds take the best of the `screen` moves with the largest separable gains,
    combining the improving ones on disjoint cameras when that is better still). The best plan by the
    exact objective wins.
    Multi-GPU (`pack_devices`): when the result's jobs do not pack on the devices (first-fit
    decreasing), the shares are repaired on a fine grid so that every job fits on one device (a
    knapsack per device, PickConfigs' configs) and refined by `repair_rounds` device-aware exact thief
    moves; the plan reports each job's device.
    """
    t0 = time.perf_counter()
    large = 2 * len(problem.cameras) > exact_jobs  # auto settings: more separable work on large problems
    price_rounds = (1 if large else 0) if price_rounds is None else price_rounds
    polish_separable = large if polish_separable is None else polish_separable
    model = SeparableModel(problem)
    ev = FastEvaluator(problem)
    lat = fair_lattice(problem)
    vals = lat.values()
    n = model.n
    _, cfg_idx = model.training_table(vals)  # PickConfigs (own estimate) at every training level
    cands: list[tuple[float, list[int], list[int]]] = []

    def add(li, lt) -> None:
        c_inf, c_tr, c_cfgs = _shares(model, vals, cfg_idx, li, lt)
        cands.append((exact_mean(problem, c_inf, c_tr, c_cfgs, ev), list(li), list(lt)))

    prev_inf = np.full(n, lat.fair)
    prev_tr = np.where(model.has_options, lat.fair, 0.0)
    for r in range(price_rounds + 1):
        price = model.shadow_price(prev_inf, prev_tr) if r > 0 else 0.0
        li, lt = _search(problem, model, lat, vals, price, max_passes)
        add(li, lt)
        prev_inf, prev_tr = _shares(model, vals, cfg_idx, li, lt)[:2]
    if knapsack and n > 0 and problem.gpus > 0 and lat.size > 1:
        lam = None
        for f in (0.0, 1.0):
            if f > 0 and not lam:
                break
            res = lattice_knapsack(problem, model, lat, vals, cfg_idx, f * (lam or 0.0))
            if res is None:
                break
            k_li, k_lt, k_lam = res
            lam = k_lam if lam is None else lam
            add(k_li, k_lt)
    best = max(cands, key=lambda c: c[0])
    if exact and n > 0 and problem.gpus > 0 and lat.size > 1:
        fair_start = ([lat.start] * n, [lat.start if model.has_options[v] else -1 for v in range(n)])
        both = polish_separable if both_starts is None else both_starts
        starts = [fair_start, (best[1], best[2])] if both else [fair_start]
        for s_li, s_lt in starts:
            e_li, e_lt = _exact_search(problem, model, lat, vals, cfg_idx, s_li, s_lt, max_passes, exact_jobs,
                                       screen, global_iters)
            e_inf, e_tr, e_cfgs = _shares(model, vals, cfg_idx, e_li, e_lt)
            acc = exact_mean(problem, e_inf, e_tr, e_cfgs, ev)
            if acc > best[0] + GAIN_EPS:
                best = (acc, e_li, e_lt)
    _, li, lt = best
    inf, tr, cfgs = _shares(model, vals, cfg_idx, li, lt)
    plan = build_plan(problem, "thief", inf, tr, cfgs, 0.0, ev)
    if pack_devices and not plan.placement_ok and problem.gpus > 0:
        repaired = repair_placement(problem, model, inf, tr, cfgs, "thief", ev, rounds=repair_rounds)
        if repaired.placement_ok:
            plan = repaired
    # safety floor: noretrain's equal split (what the fair start becomes when no config is worth it)
    floor = noretrain(problem)
    if (floor.placement_ok or not plan.placement_ok) and floor.planned_accuracy > plan.planned_accuracy + 1e-12:
        plan = replace(floor, scheduler="thief")
    return replace(plan, plan_seconds=time.perf_counter() - t0)


def lattice_knapsack(problem: Problem, model: SeparableModel, lat, vals: np.ndarray, cfg_idx: np.ndarray,
                     price: float) -> tuple[list[int], list[int], float] | None:
    """The best allocation on the thief's lattice under the separable estimate with a shared budget
    (the fair split's total), configs by PickConfigs; price values the share a finished job (or an idle
    training share) hands back. Returns levels (training -1: no job) and the knapsack's shadow price."""
    n, K = model.n, lat.size
    d = lat.delta
    s0 = float(vals[0])
    has = model.has_options
    J = n + int(has.sum())
    budget = int(np.floor((problem.gpus - J * s0) / d + 1e-6))
    if budget < 0:
        return None
    T = float(problem.window)
    S = model.inference_scale(vals)  # (K,)
    # per camera and training level: PickConfigs' window-average base accuracy and the share-time handed back
    rate = problem.throughput.array(vals)
    Bt = np.repeat(model.base[:, None], K, axis=1)
    back = np.repeat(vals[None, :], n, axis=0)  # idle training share: handed back at once
    if model.width and T > 0:
        j = np.maximum(cfg_idx, 0)
        rows = np.arange(n)[:, None]
        cost = model.cost[rows, j]
        tau = model.wall_time(cost, rate[None, :])
        frac = np.clip(tau / T, 0.0, 1.0)
        picked = cfg_idx >= 0
        Bt = np.where(picked, model.base[:, None] * frac + model.end[rows, j] * (1.0 - frac), Bt)
        back = np.where(picked, vals[None, :] * (1.0 - frac), back)
    U = S[None, :, None] * Bt[:, None, :] + price * back[:, None, :]  # (N, Ka, Kt)
    floor = model.min_inference_share_index(S, lat.start)
    X = 2 * K - 1
    V = np.full((n, X), -np.inf)
    A = np.full((n, X), -1, dtype=int)
    for v in range(n):
        lo = int(floor[v])
        if has[v]:
            for a in range(lo, K):
                seg = U[v, a, :]
                cur = V[v, a:a + K]
                better = seg > cur
                V[v, a:a + K] = np.where(better, seg, cur)
                A[v, a:a + K] = np.where(better, a, A[v, a:a + K])
        else:
            V[v, lo:K] = S[lo:K] * model.base[v]
            A[v, lo:K] = np.arange(lo, K)
    total, xs, F = mckp(V, budget, curve=True)
    if not np.isfinite(total):
        return None
    li = [int(A[v, xs[v]]) for v in range(n)]
    lt = [int(xs[v] - li[v]) if has[v] else -1 for v in range(n)]
    k = max(1, int(round(0.1 / d)))
    lam = 0.0
    if budget >= k and np.isfinite(F[budget - k]):
        lam = max(float(F[budget] - F[budget - k]) / (k * d), 0.0)
    return li, lt, lam


def repair_placement(problem: Problem, model: SeparableModel, inf: np.ndarray, tr: np.ndarray,
                     cfgs, scheduler: str, ev: FastEvaluator, rounds: int = 8) -> Plan:
    """Make an allocation pack: shares floored to a fine grid, a per-device knapsack where first-fit
    decreasing fails (price 0: PickConfigs' configs), then device-aware exact thief moves."""
    m = choose_units(problem)
    tab = build_tables(problem, model, m, 0.0)
    has = np.array([c is not None for c in cfgs], dtype=bool)
    li = np.clip(np.floor(np.asarray(inf) * m + 1e-6).astype(int), 0, tab.ki - 1)
    li = np.maximum(li, tab.imin)
    lt = np.where(has, np.clip(np.floor(np.asarray(tr) * m + 1e-6).astype(int), 0, tab.kt - 1), 0)
    # a training level the tables cannot run (no config finishes there) is dropped
    lt = np.where(np.isfinite(tab.U[np.arange(model.n), li, lt]), lt, 0)
    p_li, p_lt, dev_i, dev_t, _ = pack(tab, li, lt, problem.gpus)
    scorer = GridScorer(problem, model, tab)
    st, _ = refine(scorer, GridState(p_li, p_lt, dev_i, dev_t), problem.gpus, rounds=rounds, screen=48)
    c = scorer.configs(st.li, st.lt)
    lt_used = np.where([x is not None for x in c], st.lt, 0)
    return build_plan(problem, scheduler, st.li / m, lt_used / m, c, 0.0, ev, devices=(st.dev_i, st.dev_t))


def _shares(model: SeparableModel, vals: np.ndarray, cfg_idx: np.ndarray, li, lt):
    n = model.n
    inf = np.array([vals[li[v]] for v in range(n)], dtype=float)
    tr = np.array([vals[lt[v]] if lt[v] >= 0 else 0.0 for v in range(n)], dtype=float)
    cfgs = [model.config_name(v, int(cfg_idx[v, lt[v]])) if lt[v] >= 0 else None for v in range(n)]
    return inf, tr, cfgs


def _search(problem: Problem, model: SeparableModel, lat, vals: np.ndarray, price: float,
            max_passes: int) -> tuple[list[int], list[int]]:
    """Algorithm 1 on the separable estimate; returns lattice levels (inference, training; -1: no job)."""
    n = model.n
    S = model.inference_scale(vals)
    U, _ = model.joint_table(vals, price)
    start = lat.start
    floor_inf = model.min_inference_share_index(S, start)
    Sl = S.tolist()
    Ul = U.tolist()
    base = model.base.tolist()
    K = lat.size
    li = [start] * n  # inference level per camera
    lt = [start if model.has_options[v] else -1 for v in range(n)]  # training level (-1: no job)
    # jobs: (camera, is_training), per camera inference then retraining, like the original's list
    jobs: list[tuple[int, bool]] = []
    for v in range(n):
        jobs.append((v, False))
        if lt[v] >= 0:
            jobs.append((v, True))
    floor = [int(f) for f in floor_inf]

    def util(v: int, a: int, b: int) -> float:
        return Ul[v][a][b] if b >= 0 else Sl[a] * base[v]

    cur = [util(v, li[v], lt[v]) for v in range(n)]
    if K > 1 and problem.gpus > 0:
        for _ in range(max_passes):
            improved = False
            for tv, tk in jobs:
                for vv, vk in jobs:
                    if tv == vv and tk == vk:
                        continue
                    t_lvl = lt[tv] if tk else li[tv]
                    v_lvl = lt[vv] if vk else li[vv]
                    v_floor = 0 if vk else floor[vv]
                    steps = min(v_lvl - v_floor, K - 1 - t_lvl)
                    if steps <= 0:
                        continue
                    best_gain, best_m, best_pair = GAIN_EPS, 0, (0.0, 0.0)
                    if tv == vv:
                        base_u = cur[tv]
                        for m in range(1, steps + 1):
                            u = util(tv, li[tv] + m, lt[tv] - m) if tk is False else util(tv, li[tv] - m, lt[tv] + m)
                            g = u - base_u
                            if g > best_gain:
                                best_gain, best_m, best_pair = g, m, (u, u)
                    else:
                        for m in range(1, steps + 1):
                            ut = util(tv, li[tv], lt[tv] + m) if tk else util(tv, li[tv] + m, lt[tv])
                            uv = util(vv, li[vv], lt[vv] - m) if vk else util(vv, li[vv] - m, lt[vv])
                            g = (ut - cur[tv]) + (uv - cur[vv])
                            if g > best_gain:
                                best_gain, best_m, best_pair = g, m, (ut, uv)
                    if best_m:
                        m = best_m
                        if tk:
                            lt[tv] += m
                        else:
                            li[tv] += m
                        if vk:
                            lt[vv] -= m
                        else:
                            li[vv] -= m
                        cur[tv], cur[vv] = best_pair[0], best_pair[1]
                        if tv == vv:
                            cur[tv] = best_pair[0]
                        improved = True
            if not improved:
                break
    return li, lt


def _exact_search(problem: Problem, model: SeparableModel, lat, vals: np.ndarray, cfg_idx: np.ndarray,
                  li: list[int], lt: list[int], max_passes: int, exact_jobs: int, screen: int,
                  global_iters: int) -> tuple[list[int], list[int]]:
    """Thief moves on the lattice scored with the exact objective (batched), from levels li/lt."""
    n, K = model.n, lat.size
    has_opt = model.has_options
    # per camera and training level: the picked config's end accuracy and cost (column K: no job)
    end_tab = np.repeat(model.base[:, None], K + 1, axis=1)
    work_tab = np.zeros((n, K + 1))
    has_tab = np.zeros((n, K + 1), dtype=bool)
    for v in range(n):
        for k in range(K):
            j = int(cfg_idx[v, k])
            if has_opt[v] and j >= 0:
                end_tab[v, k], work_tab[v, k], has_tab[v, k] = model.end[v, j], model.cost[v, j], True
    vals_ext = np.append(vals, 0.0)
    S = model.inference_scale(vals)
    floor = model.min_inference_share_index(S, lat.start)
    cols = np.arange(n)
    LI = np.array(li, dtype=int)
    LT = np.array([k if k >= 0 else K for k in lt], dtype=int)

    def score(LIs: np.ndarray, LTs: np.ndarray) -> np.ndarray:
        return batch_mean(problem, vals_ext[LIs], vals_ext[LTs], end_tab[cols, LTs], work_tab[cols, LTs],
                          has_tab[cols, LTs])

    jobs = [(v, False) for v in range(n)] + [(v, True) for v in range(n) if has_opt[v]]
    jobs.sort()

    jv = np.array([v for v, _ in jobs], dtype=int)
    jk = np.array([k for _, k in jobs], dtype=bool)
    jlow = np.where(jk, 0, floor[jv]) if len(jobs) else np.zeros(0, dtype=int)

    def moves(thieves) -> tuple[np.ndarray, np.ndarray]:
        """Candidate level arrays for every (thief in thieves, victim, size), victims in job order and
        sizes ascending."""
        rows_i, rows_t = [], []
        for tv, tk in thieves:
            room = K - 1 - (LT[tv] if tk else LI[tv])
            steps = np.minimum(room, np.where(jk, LT[jv], LI[jv]) - jlow)
            steps[(jv == tv) & (jk == tk)] = 0
            steps = np.maximum(steps, 0)
            total = int(steps.sum())
            if total == 0:
                continue
            vidx = np.repeat(np.arange(len(jobs)), steps)
            ms = np.arange(total) - np.repeat(np.cumsum(steps) - steps, steps) + 1
            a = np.repeat(LI[None], total, axis=0)
            b = np.repeat(LT[None], total, axis=0)
            r = np.arange(total)
            (b if tk else a)[:, tv] += ms
            vc, vkk = jv[vidx], jk[vidx]
            b[r[vkk], vc[vkk]] -= ms[vkk]
            a[r[~vkk], vc[~vkk]] -= ms[~vkk]
            rows_i.append(a)
            rows_t.append(b)
        if not rows_i:
            return np.zeros((0, n), dtype=int), np.zeros((0, n), dtype=int)
        return np.concatenate(rows_i), np.concatenate(rows_t)

    cur = float(score(LI[None], LT[None])[0])
    if len(jobs) <= exact_jobs:
        version = 0  # accepted moves so far
        settled: dict[tuple[int, bool], int] = {}  # thief -> version at which it found nothing
        for _ in range(max_passes):
            improved = False
            for job in jobs:
                if settled.get(job) == version:  # same state as when it last found nothing
                    continue
                for _ in range(8):
                    ci, ct = moves([job])
                    if len(ci) == 0:
                        settled[job] = version
                        break
                    vals_c = score(ci, ct)
                    k = int(np.argmax(vals_c))
                    if vals_c[k] <= cur + GAIN_EPS:
                        settled[job] = version
                        break
                    cur, LI, LT = float(vals_c[k]), ci[k], ct[k]
                    improved = True
                    version += 1
            if not improved:
                break
    else:
        U, _ = model.joint_table(vals, model.shadow_price(vals_ext[LI], vals_ext[LT]))
        U = np.concatenate([U, (model.base[:, None] * S[None, :])[:, :, None]], axis=2)  # column K: no job
        jc = np.array([v for v, _ in jobs])
        jk = np.array([k for _, k in jobs], dtype=bool)
        same = jc[:, None] == jc[None, :]
        for _ in range(global_iters):
            ci, ct = _screened_moves(U, LI, LT, jc, jk, same, floor, K, screen)
            if len(ci) == 0:
                break
            vals_c = score(ci, ct)
            order = np.argsort(-vals_c, kind="stable")
            if vals_c[order[0]] <= cur + GAIN_EPS:
                break
            # combine the improving moves that touch disjoint cameras; keep the combination if better
            comb_i, comb_t = LI.copy(), LT.copy()
            used: set[int] = set()
            for k in order:
                if vals_c[k] <= cur + GAIN_EPS:
                    break
                touched = set(np.flatnonzero((ci[k] != LI) | (ct[k] != LT)).tolist())
                if touched & used:
                    continue
                used |= touched
                idx = list(touched)
                comb_i[idx], comb_t[idx] = ci[k][idx], ct[k][idx]
            comb = float(score(comb_i[None], comb_t[None])[0])
            k = int(order[0])
            if comb > vals_c[k]:
                cur, LI, LT = comb, comb_i, comb_t
            else:
                cur, LI, LT = float(vals_c[k]), ci[k], ct[k]
    return LI.tolist(), [int(k) if k < K else -1 for k in LT]


def _screened_moves(U: np.ndarray, LI: np.ndarray, LT: np.ndarray, jc: np.ndarray, jk: np.ndarray,
                    same: np.ndarray, floor: np.ndarray, K: int, screen: int) -> tuple[np.ndarray, np.ndarray]:
    """The `screen` steals (thief, victim, size) with the largest separable gains, as level arrays."""
    J = len(jc)
    li, lt = LI[jc], LT[jc]
    lvl = np.where(jk, lt, li)
    low = np.where(jk, 0, floor[jc])
    cur = U[jc, li, lt]
    gains, sizes = [], []
    for m in range(1, K):
        ok_t = lvl + m <= K - 1
        ok_v = lvl - m >= low
        if not (ok_t.any() and ok_v.any()):
            continue
        ti = np.clip(np.where(jk, li, li + m), 0, K - 1)
        tt = np.clip(np.where(jk, lt + m, lt), 0, K)
        vi = np.clip(np.where(jk, li, li - m), 0, K - 1)
        vt = np.clip(np.where(jk, lt - m, lt), 0, K)
        g = (U[jc, ti, tt] - cur)[:, None] + (U[jc, vi, vt] - cur)[None, :]
        # same camera: thief inference <- victim training, or the reverse
        si = np.clip(np.where(jk, li - m, li + m), 0, K - 1)
        st = np.clip(np.where(jk, lt + m, lt - m), 0, K)
        g_same = U[jc, si, st] - cur  # indexed by the thief
        g = np.where(same, g_same[:, None], g)
        valid = ok_t[:, None] & ok_v[None, :] & ~np.eye(J, dtype=bool)
        gains.append(np.where(valid, g, -np.inf))
        sizes.append(m)
    if not gains:
        return np.zeros((0, len(LI)), dtype=int), np.zeros((0, len(LI)), dtype=int)
    G = np.stack(gains)  # (Msizes, J, J)
    flat = G.ravel()
    k = min(screen, int(np.isfinite(flat).sum()))
    if k == 0:
        return np.zeros((0, len(LI)), dtype=int), np.zeros((0, len(LI)), dtype=int)
    top = np.argpartition(-flat, k - 1)[:k]
    top = top[np.argsort(-flat[top], kind="stable")]
    mi, t, v = np.unravel_index(top, G.shape)
    rows_i = np.repeat(LI[None], k, axis=0)
    rows_t = np.repeat(LT[None], k, axis=0)
    r = np.arange(k)
    m = np.array(sizes)[mi]
    np.add.at(rows_t, (r[jk[t]], jc[t][jk[t]]), m[jk[t]])
    np.add.at(rows_i, (r[~jk[t]], jc[t][~jk[t]]), m[~jk[t]])
    np.add.at(rows_t, (r[jk[v]], jc[v][jk[v]]), -m[jk[v]])
    np.add.at(rows_i, (r[~jk[v]], jc[v][~jk[v]]), -m[~jk[v]])
    return rows_i, rows_t
