"""Where a trainer runs on the GPUs: the device it starts on (only one with the free memory it needs, read
through NVML before launch) and the environment that pins it there with its MPS share."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

from .nvml import gpu_inventory, nvml_error

__all__ = ["GpuMemoryError", "check_free_memory", "choose_training_device", "env_for_share",
           "free_memory_bytes", "mps_thread_percentage"]


class GpuMemoryError(RuntimeError):
    """A GPU does not have the free memory a job needs (checked before the job starts)."""


def free_memory_bytes(device_index: int) -> int | None:
    """A GPU's free memory through NVML; None where NVML cannot read it (no driver, no such index)."""
    found = gpu_inventory([device_index])
    return found[0].memory_free_bytes if found else None


def check_free_memory(device_index: int, required_bytes: int) -> int:
    """Return the device's free memory; raise GpuMemoryError if below `required_bytes` or unreadable."""
    free = free_memory_bytes(device_index)
    if free is None:
        reason = nvml_error() or f"no GPU with index {device_index}"
        raise GpuMemoryError(f"cannot read GPU {device_index}'s memory through NVML ({reason})")
    if free < required_bytes:
        raise GpuMemoryError(
            f"GPU {device_index} has {free / 2**30:.2f} GiB free, the job needs {required_bytes / 2**30:.2f} GiB"
        )
    return free


def choose_training_device(planned: int, devices: Sequence[int], required_bytes: int,
                           free_bytes: Callable[[int], int | None] = free_memory_bytes) -> int:
    """The GPU a trainer starts on: the plan's where it has `required_bytes` free, else the deployment's
    GPU with the most free memory that has; GpuMemoryError where none has (the job is not started, so it
    cannot take memory that serving needs). A GPU NVML cannot read is taken as planned: the worker checks
    again through CUDA before it trains."""
    free = free_bytes(planned)
    if free is None or free >= required_bytes:
        return planned
    readable = {d: f for d in devices if d != planned and (f := free_bytes(d)) is not None}
    fits = [d for d, f in readable.items() if f >= required_bytes]
    if fits:
        return max(fits, key=lambda d: readable[d])
    seen = ", ".join(f"GPU {d} {f / 2**20:.0f} MiB" for d, f in sorted({planned: free, **readable}.items()))
    raise GpuMemoryError(f"no GPU has the {required_bytes / 2**20:.0f} MiB free a trainer needs ({seen} free)")


def mps_thread_percentage(share: float) -> int:
    """CUDA_MPS_ACTIVE_THREAD_PERCENTAGE for a share in (0, 1]: rounded, at least 1."""
    if not (isinstance(share, (int, float)) and math.isfinite(share) and 0.0 < share <= 1.0):
        raise ValueError(f"a GPU share must be in (0, 1], got {share!r}")
    return max(1, min(100, round(share * 100)))


def env_for_share(
    share: float,
    device_index: int,
    *,
    pipe_dir: str | os.PathLike[str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    memory_limit_bytes: int | None = None,
) -> dict[str, str]:
    """Environment variables for a trainer pinned to GPU `device_index` with `share` of its SMs.

    Merge into the child's environment (`{**os.environ, **env_for_share(...)}`). With `pipe_dir` the
    child becomes a client of that MPS daemon; `memory_limit_bytes` caps its device memory through
    CUDA_MPS_PINNED_DEVICE_MEM_LIMIT (device 0 is the only device the child sees).
    """
    if device_index < 0:
        raise ValueError(f"device index must be >= 0, got {device_index}")
    env = {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": str(device_index),
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(mps_thread_percentage(share)),
    }
    if pipe_dir is not None:
        env["CUDA_MPS_PIPE_DIRECTORY"] = str(pipe_dir)
    if log_dir is not None:
        env["CUDA_MPS_LOG_DIRECTORY"] = str(log_dir)
    if memory_limit_bytes is not None:
        if memory_limit_bytes <= 0:
            raise ValueError(f"memory limit must be > 0 bytes, got {memory_limit_bytes}")
        env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={max(1, memory_limit_bytes // 2**20)}M"
    return env

