"""The separable approximation of the objective used for search.

Ignoring the redistribution of completed jobs' shares, a camera's window accuracy with inference share
i and training share t is S(i) x B_v(t): S the inference factor, B_v the best (over its configs, or no
retraining) time-averaged base accuracy when training at share t. PickConfigs is the argmax in B_v, so
it is separable across cameras given the shares, and tables of S and B_v on a share lattice make a
move's gain an O(1) lookup.
"""

from __future__ import annotations

import numpy as np

from .profiles import Problem

NO_CONFIG = -1


class SeparableModel:
    """Per-camera option matrices and the S / B tables at given shares."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        cams = problem.cameras
        self.n = len(cams)
        self.base = np.array([c.accuracy for c in cams], dtype=float)
        self.latency = problem.latencies()  # fixed wall seconds before a job's model serves
        width = max((len(c.options) for c in cams), default=0)
        self.width = width
        self.end = np.zeros((self.n, max(width, 1)))
        self.cost = np.full((self.n, max(width, 1)), np.inf)
        self.names: list[list[str]] = []
        for v, c in enumerate(cams):
            self.names.append([o.config for o in c.options])
            for j, o in enumerate(c.options):
                self.end[v, j] = o.end_accuracy
                self.cost[v, j] = o.gpu_seconds
        self.has_options = np.array([len(c.options) > 0 for c in cams], dtype=bool)

    def wall_time(self, cost: np.ndarray, rate: np.ndarray) -> np.ndarray:
        """Seconds from a job's start to its model serving: `cost` GPU-seconds (first axis: camera) at
        relative throughput `rate` (broadcast against cost), plus the camera's fixed latency."""
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = np.where(rate > 0, cost / np.where(rate > 0, rate, 1.0), np.inf)
        tau = np.where(cost == 0, 0.0, tau)
        return tau + self.latency.reshape((-1,) + (1,) * (tau.ndim - 1))

    def inference_scale(self, shares: np.ndarray) -> np.ndarray:
        return self.problem.inference.scale_array(np.asarray(shares, dtype=float))

    def training_table(self, shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """B[v, k] (base accuracy averaged over the window, no inference factor) and the chosen
        option index (NO_CONFIG when retraining does not beat keeping the current model)."""
        T = float(self.problem.window)
        shares = np.asarray(shares, dtype=float)
        rate = self.problem.throughput.array(shares)  # (K,)
        b0 = self.base[:, None, None]
        tau = self.wall_time(self.cost[:, :, None], rate[None, None, :])  # (N, C, K)
        if T > 0:
            frac = np.clip(tau / T, 0.0, 1.0)
            avg = np.where(tau < T, b0 * frac + self.end[:, :, None] * (1.0 - frac), b0)
        else:
            avg = np.broadcast_to(b0, tau.shape).copy()
        if self.width == 0:
            k = len(shares)
            return np.repeat(self.base[:, None], k, axis=1), np.full((self.n, k), NO_CONFIG)
        valid = np.isfinite(self.cost)[:, :, None]
        avg = np.where(valid, avg, -np.inf)
        arg = np.argmax(avg, axis=1)  # (N, K)
        best = np.take_along_axis(avg, arg[:, None, :], axis=1)[:, 0, :]
        better = best > self.base[:, None] + 1e-12
        table = np.where(better, best, self.base[:, None])
        return table, np.where(better, arg, NO_CONFIG)

    def joint_table(self, shares: np.ndarray, price: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """U[v, a, b]: camera v's estimated window accuracy with inference share shares[a] and training
        share shares[b], plus `price` (accuracy per unit share over the window) for the share-time its
        job hands back to the others once it completes (a separable stand-in for the redistribution of
        completed shares; price 0 is the original's own-camera estimate); and the chosen option.
        """
        T = float(self.problem.window)
        sh = np.asarray(shares, dtype=float)
        K = len(sh)
        S = self.inference_scale(sh)  # (Ka,)
        keep = self.base[:, None, None] * S[None, :, None] + price * sh[None, None, :]  # (N, Ka, Kt)
        if self.width == 0 or T <= 0:
            return np.broadcast_to(keep, (self.n, K, K)).copy(), np.full((self.n, K, K), NO_CONFIG)
        rate = self.problem.throughput.array(sh)
        tau = self.wall_time(self.cost[:, :, None], rate[None, None, :])  # (N, C, Kt)
        frac = np.clip(tau / T, 0.0, 1.0)
        avg = self.base[:, None, None] * frac + self.end[:, :, None] * (1.0 - frac)  # (N, C, Kt)
        bonus = price * sh[None, None, :] * (1.0 - frac)  # (N, C, Kt)
        u = avg[:, :, None, :] * S[None, None, :, None] + bonus[:, :, None, :]  # (N, C, Ka, Kt)
        ok = (tau < T) & np.isfinite(self.cost)[:, :, None]
        u = np.where(ok[:, :, None, :], u, -np.inf)
        arg = np.argmax(u, axis=1)  # (N, Ka, Kt)
        best = np.take_along_axis(u, arg[:, None], axis=1)[:, 0]
        better = best > keep + 1e-12
        return np.where(better, best, keep), np.where(better, arg, NO_CONFIG)

    def shadow_price(self, inf: np.ndarray, tr: np.ndarray) -> float:
        """Accuracy gained (summed over cameras, per unit share held over the whole window) when share
        is handed back by the equal split: the mean secant slope of base x S at the inference shares,
        over the step each camera would receive."""
        inf = np.asarray(inf, dtype=float)
        step = max(float(np.sum(tr)) / max(self.n, 1), 1e-3)
        gain = self.base * (self.inference_scale(inf + step) - self.inference_scale(inf)) / step
        return float(np.mean(gain)) if self.n else 0.0

    def config_name(self, v: int, idx: int) -> str | None:
        return None if idx == NO_CONFIG else self.names[v][idx]

    def min_inference_share_index(self, scales: np.ndarray, start_index: int | None = None) -> np.ndarray:
        """Per camera, the lowest lattice index whose inference accuracy keeps the a_min floor.

        If the floor cannot be held at the start index, the start index is the floor (never go lower).
        """
        a_min = self.problem.a_min
        k = len(scales)
        out = np.zeros(self.n, dtype=int)
        if a_min <= 0:
            return out
        ok = self.base[:, None] * scales[None, :] >= a_min - 1e-12  # (N, K)
        for v in range(self.n):
            idx = np.flatnonzero(ok[v])
            first = int(idx[0]) if idx.size else k - 1
            if start_index is not None:
                first = min(first, start_index)
            out[v] = first
        return out
