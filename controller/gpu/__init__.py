"""The GPUs: NVML inventory (`nvml`), where a trainer runs and its environment (`placement`), and the CUDA
MPS control daemon (`mps`).

- `gpu_inventory()` lists the GPUs with memory and utilisation; it returns [] on a machine without an
  NVIDIA driver, never raises for that.
- `MpsDaemon` runs a private MPS control daemon; it NEVER changes the compute mode or resets a GPU.
- `env_for_share(share, device_index)` is the environment of a trainer process pinned to one GPU with
  an MPS active-thread percentage; `choose_training_device` the GPU it starts on.
"""

from .mps import MpsDaemon, MpsError
from .nvml import GpuInfo, describe, gpu_count, gpu_inventory, nvml_available, nvml_error
from .placement import (
    GpuMemoryError,
    check_free_memory,
    choose_training_device,
    env_for_share,
    free_memory_bytes,
    mps_thread_percentage,
)

__all__ = [
    "GpuInfo",
    "GpuMemoryError",
    "MpsDaemon",
    "MpsError",
    "check_free_memory",
    "choose_training_device",
    "describe",
    "env_for_share",
    "free_memory_bytes",
    "gpu_count",
    "gpu_inventory",
    "mps_thread_percentage",
    "nvml_available",
    "nvml_error",
]
