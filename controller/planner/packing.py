"""Device-aware allocation on the fine grid: every job (a camera's inference or its retraining) runs on
one device, and each device's jobs sum to at most one GPU.

An allocation that ignores devices (the global knapsack) is placed by first-fit decreasing; when that
fails, jobs are assigned to devices (a camera's two jobs together where they fit, largest first, on the
device with the most room, overflowing where needed) and every device's share is re-optimised by an
exact knapsack over the jobs placed on it (budget one GPU; a camera whose other job is elsewhere keeps
that job's share), overloaded devices first, in sweeps. The result always packs.
"""

from __future__ import annotations

import numpy as np

from .grid import NEG, GridTables, joint_values, mckp


def first_fit_decreasing(li: np.ndarray, lt: np.ndarray, gpus: int, m: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Devices per job (inference, training) by first-fit decreasing in whole units, or None if some
    job does not fit. Jobs with no share get the device of the camera's other job (or device 0)."""
    n = len(li)
    dev_i = np.full(n, -1, dtype=int)
    dev_t = np.full(n, -1, dtype=int)
    if gpus <= 0:
        return (dev_i, dev_t) if not (np.any(li > 0) or np.any(lt > 0)) else None
    jobs = [(int(li[v]), v, 0) for v in range(n) if li[v] > 0] + [(int(lt[v]), v, 1) for v in range(n) if lt[v] > 0]
    jobs.sort(key=lambda j: (-j[0], j[1], j[2]))
    free = [m] * gpus
    for size, v, kind in jobs:
        d = next((k for k in range(gpus) if free[k] >= size), None)
        if d is None:
            return None
        free[d] -= size
        (dev_t if kind else dev_i)[v] = d
    _fill_idle_devices(dev_i, dev_t)
    return dev_i, dev_t


def _fill_idle_devices(dev_i: np.ndarray, dev_t: np.ndarray) -> None:
    """A job with no share sits with the camera's other job (device 0 when neither has one), so that a
    later move that gives it share places it there."""
    no_i = dev_i < 0
    dev_i[no_i] = np.where(dev_t[no_i] >= 0, dev_t[no_i], 0)
    no_t = dev_t < 0
    dev_t[no_t] = dev_i[no_t]


def loads(li: np.ndarray, lt: np.ndarray, dev_i: np.ndarray, dev_t: np.ndarray, gpus: int) -> np.ndarray:
    out = np.zeros(max(gpus, 0), dtype=int)
    np.add.at(out, dev_i, li)
    np.add.at(out, dev_t, lt)
    return out


def assign_overflowing(li: np.ndarray, lt: np.ndarray, gpus: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Devices per job, keeping a camera's jobs together where they fit; may overload devices."""
    n = len(li)
    dev_i = np.zeros(n, dtype=int)
    dev_t = np.zeros(n, dtype=int)
    free = np.full(gpus, m, dtype=int)
    for v in sorted(range(n), key=lambda v: (-(li[v] + lt[v]), v)):
        d = int(np.argmax(free))
        if li[v] + lt[v] <= free[d]:
            dev_i[v] = dev_t[v] = d
            free[d] -= li[v] + lt[v]
            continue
        big_t = lt[v] > li[v]
        first, second = (lt[v], li[v]) if big_t else (li[v], lt[v])
        free[d] -= first
        d2 = int(np.argmax(free))
        free[d2] -= second
        if big_t:
            dev_t[v], dev_i[v] = d, d2
        else:
            dev_i[v], dev_t[v] = d, d2
        if second == 0:
            (dev_i if big_t else dev_t)[v] = d
    return dev_i, dev_t


def device_dp(t: GridTables, V: np.ndarray, A: np.ndarray, li: np.ndarray, lt: np.ndarray, dev_i: np.ndarray,
              dev_t: np.ndarray, d: int) -> None:
    """Re-optimise the shares of the jobs on device d (in place), budget one GPU."""
    m = t.m
    ki, kt = t.ki, t.kt
    cams = np.flatnonzero((dev_i == d) | ((dev_t == d) & (lt > 0)))
    if cams.size == 0:
        return
    X1 = m + 1
    vals = np.full((cams.size, X1), NEG)
    kinds = []
    for r, v in enumerate(cams):
        both = dev_i[v] == d and (dev_t[v] == d or lt[v] == 0)
        if both:
            w = min(V.shape[1], X1)
            vals[r, :w] = V[v, :w]
            kinds.append(0)
        elif dev_i[v] == d:  # only the inference job here; the training job elsewhere keeps its share
            w = min(ki, X1)
            vals[r, :w] = t.U[v, :w, lt[v]]
            kinds.append(1)
        else:  # only the training job here
            w = min(kt, X1)
            vals[r, :w] = t.U[v, li[v], :w]
            kinds.append(2)
    total, xs = mckp(vals, m)
    if not np.isfinite(total):
        # the a_min floors of the cameras here do not fit on one device: no retraining here, and the
        # inference shares scaled down to fit (the floors give way)
        on_t = (dev_t == d) & (lt > 0)
        lt[on_t] = 0
        dev_t[on_t] = dev_i[on_t]
        on_i = dev_i == d
        load = int(li[on_i].sum())
        if load > m:
            li[on_i] = (li[on_i] * m) // load
        return
    for r, v in enumerate(cams):
        x = int(xs[r])
        if kinds[r] == 0:
            a = max(int(A[v, x]), 0)
            li[v], lt[v] = a, x - a
            dev_t[v] = d
        elif kinds[r] == 1:
            li[v] = x
        else:
            lt[v] = x
            if x == 0:
                dev_t[v] = dev_i[v]


def pack(t: GridTables, li: np.ndarray, lt: np.ndarray, gpus: int, *, sweeps: int = 2,
         V: np.ndarray | None = None, A: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Levels and devices that pack; returns (li, lt, dev_i, dev_t, repaired)."""
    m = t.m
    li = np.asarray(li, dtype=int).copy()
    lt = np.asarray(lt, dtype=int).copy()
    placed = first_fit_decreasing(li, lt, gpus, m)
    if placed is not None:
        return li, lt, placed[0], placed[1], False
    if V is None or A is None:
        V, A = joint_values(t)
    dev_i, dev_t = assign_overflowing(li, lt, gpus, m)
    for _ in range(sweeps):
        ld = loads(li, lt, dev_i, dev_t, gpus)
        for d in np.argsort(-ld, kind="stable"):
            device_dp(t, V, A, li, lt, dev_i, dev_t, int(d))
    _fill_idle_devices(dev_i, dev_t)
    return li, lt, dev_i, dev_t, True
