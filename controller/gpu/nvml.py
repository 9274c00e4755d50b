"""GPU inventory through NVML (pynvml): memory, utilisation, compute mode. Every function returns an
empty answer on a machine without an NVIDIA driver and never raises for that.

Device indices are NVML/PCI-bus order (the trainer environments built in placement.py set
CUDA_DEVICE_ORDER=PCI_BUS_ID so that CUDA numbers the GPUs the same way).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GpuInfo", "describe", "gpu_count", "gpu_inventory", "nvml_available", "nvml_error"]


@dataclass(frozen=True)
class GpuInfo:
    index: int  # NVML index (PCI bus order)
    name: str
    uuid: str
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    utilization_ratio: float | None  # GPU busy fraction over NVML's last sample period, 0..1
    memory_utilization_ratio: float | None  # memory-controller busy fraction, 0..1
    compute_mode: str  # read only, for diagnostics: "default", "exclusive_process", "prohibited", ...


_nvml_lock = threading.Lock()
_nvml_state: dict[str, Any] = {"tried": False, "ok": False, "module": None, "error": None}


def _nvml() -> Any | None:
    """The initialised pynvml module, or None when there is no NVIDIA driver (or no pynvml)."""
    with _nvml_lock:
        if not _nvml_state["tried"]:
            _nvml_state["tried"] = True
            try:
                import pynvml
            except ImportError as exc:
                _nvml_state["error"] = f"pynvml is not installed ({exc})"
                return None
            try:
                pynvml.nvmlInit()
            except (pynvml.NVMLError, OSError) as exc:  # no library, no driver, driver mismatch, no GPU
                _nvml_state["error"] = f"{type(exc).__name__}: {exc}"
            else:
                _nvml_state["ok"] = True
                _nvml_state["module"] = pynvml
                atexit.register(_nvml_shutdown)
        return _nvml_state["module"] if _nvml_state["ok"] else None


def _nvml_shutdown() -> None:
    module = _nvml_state.get("module")
    if module is not None:
        with contextlib.suppress(module.NVMLError):
            module.nvmlShutdown()


def nvml_available() -> bool:
    return _nvml() is not None


def nvml_error() -> str | None:
    """Why NVML is unavailable (None if it is available or was not tried)."""
    _nvml()
    return _nvml_state["error"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


def _device_info(nv: Any, index: int) -> GpuInfo:
    handle = nv.nvmlDeviceGetHandleByIndex(index)
    memory = nv.nvmlDeviceGetMemoryInfo(handle)
    try:
        rates = nv.nvmlDeviceGetUtilizationRates(handle)
        util: float | None = rates.gpu / 100.0
        mem_util: float | None = rates.memory / 100.0
    except nv.NVMLError:  # e.g. not supported on this device / in a MIG instance
        util = mem_util = None
    try:
        mode = _COMPUTE_MODES.get(int(nv.nvmlDeviceGetComputeMode(handle)), "unknown")
    except nv.NVMLError:
        mode = "unknown"
    return GpuInfo(
        index=index,
        name=_text(nv.nvmlDeviceGetName(handle)),
        uuid=_text(nv.nvmlDeviceGetUUID(handle)),
        memory_total_bytes=int(memory.total),
        memory_used_bytes=int(memory.used),
        memory_free_bytes=int(memory.free),
        utilization_ratio=util,
        memory_utilization_ratio=mem_util,
        compute_mode=mode,
    )


def gpu_count() -> int:
    nv = _nvml()
    if nv is None:
        return 0
    try:
        return int(nv.nvmlDeviceGetCount())
    except nv.NVMLError:
        return 0


def gpu_inventory(indices: list[int] | None = None) -> list[GpuInfo]:
    """The GPUs (all, or those in `indices`) with memory and utilisation; [] without a driver."""
    nv = _nvml()
    if nv is None:
        return []
    wanted = range(gpu_count()) if indices is None else indices
    out = []
    for index in wanted:
        try:
            out.append(_device_info(nv, index))
        except nv.NVMLError:  # index out of range, GPU fallen off the bus: report what can be read
            continue
    return out


def describe(inventory: list[GpuInfo] | None = None) -> Mapping[str, Any]:
    """A JSON-able summary for `ekya status` and logs."""
    gpus = gpu_inventory() if inventory is None else inventory
    return {
        "nvml": nvml_available(),
        "nvml_error": nvml_error(),
        "gpus": [
            {
                "index": g.index,
                "name": g.name,
                "memory_total_gib": round(g.memory_total_bytes / 2**30, 2),
                "memory_free_gib": round(g.memory_free_bytes / 2**30, 2),
                "utilization": g.utilization_ratio,
                "compute_mode": g.compute_mode,
            }
            for g in gpus
        ],
    }
