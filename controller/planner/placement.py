"""Multi-GPU placement: every job's share must fit on one device (bin packing, capacity 1 per GPU)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .profiles import EPS, CameraAllocation


def place(allocs: Sequence[CameraAllocation], gpus: int) -> tuple[list[CameraAllocation], bool]:
    """First-fit decreasing of all jobs (inference and training) onto `gpus` devices of capacity 1.

    Returns the allocations with devices set, and whether every job fitted whole. A job that does not
    fit is shrunk to the largest room left on any device (and placed there); zero shares get no device.
    """
    jobs: list[tuple[float, int, str]] = []
    for k, a in enumerate(allocs):
        if a.inference_share > EPS:
            jobs.append((min(a.inference_share, 1.0), k, "inf"))
        if a.training_share > EPS:
            jobs.append((min(a.training_share, 1.0), k, "train"))
    jobs.sort(key=lambda j: (-j[0], j[1], j[2]))
    free = [1.0] * max(gpus, 0)
    out = list(allocs)
    ok = all(a.inference_share <= 1.0 + EPS and a.training_share <= 1.0 + EPS for a in allocs)
    for share, k, kind in jobs:
        dev = next((d for d, f in enumerate(free) if f >= share - 1e-7), None)
        if dev is None:
            ok = False
            if not free:
                share, dev = 0.0, None
            else:
                dev = max(range(len(free)), key=lambda d: free[d])
                share = max(free[dev], 0.0)
        if dev is not None:
            free[dev] -= share
        a = out[k]
        if kind == "inf":
            out[k] = replace(a, inference_share=share, inference_device=dev if share > EPS else None)
        else:
            out[k] = replace(a, training_share=share, training_device=dev if share > EPS else None)
    return out, ok


def device_loads(allocs: Sequence[CameraAllocation], gpus: int) -> list[float]:
    """Total share placed on each device."""
    loads = [0.0] * gpus
    for a in allocs:
        if a.inference_device is not None:
            loads[a.inference_device] += a.inference_share
        if a.training_device is not None:
            loads[a.training_device] += a.training_share
    return loads
