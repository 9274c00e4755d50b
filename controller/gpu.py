"""GPU telemetry through NVML (pynvml) and the CUDA MPS control daemon.

- `gpu_inventory()` lists the GPUs with memory and utilisation; it returns [] on a machine without an
  NVIDIA driver, never raises for that.
- `MpsDaemon` runs a private MPS control daemon (its own CUDA_MPS_PIPE_DIRECTORY and
  CUDA_MPS_LOG_DIRECTORY under a directory the deployment owns): start, health check, clean stop (also at
  interpreter exit and as a context manager). It works in the GPU's default compute mode and NEVER
  changes the compute mode or resets a GPU (nothing here calls nvidia-smi).
- `env_for_share(share, device_index)` is the environment of a trainer process pinned to one GPU with
  an MPS active-thread percentage.

Device indices are NVML/PCI-bus order; the environments built here set CUDA_DEVICE_ORDER=PCI_BUS_ID so
that CUDA numbers the GPUs the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

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

MPS_CONTROL = "nvidia-cuda-mps-control"


# ----------------------------------------------------------------------------------------------- NVML
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


# ------------------------------------------------------------------------------------------------ MPS
class MpsError(RuntimeError):
    """The MPS control daemon is unavailable, failed to start or stop, or did not answer in time."""


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


class MpsDaemon:
    """A private MPS control daemon under `base_dir` (pipe/ and log/), owned by this process.

    `start()` is idempotent and adopts a daemon already running on the same pipe directory (e.g. one left
    by a killed controller); `stop()` sends `quit` and waits for the daemon to go. Both give up after
    `timeout_s` with MpsError. A started daemon is stopped at interpreter exit unless stopped before.
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        control_binary: str = MPS_CONTROL,
        timeout_s: float = 10.0,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.pipe_dir = self.base_dir / "pipe"
        self.log_dir = self.base_dir / "log"
        self.control_binary = control_binary
        self.timeout_s = timeout_s
        self._atexit_registered = False

    # ------------------------------------------------------------------------------------ plumbing
    def _binary(self) -> str:
        found = shutil.which(self.control_binary)
        if found is None:
            raise MpsError(
                f"{self.control_binary} not found on PATH: MPS needs the NVIDIA driver's utilities on this host "
                "(in a container: NVIDIA_DRIVER_CAPABILITIES must include compute and utility). "
                "Set `resources.mps: false` in the deployment config to run trainers without MPS."
            )
        return found

    def env(self) -> dict[str, str]:
        """The variables that make a process talk to this daemon."""
        return {"CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def _process_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env(), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        # The daemon must see every GPU: clients' CUDA_VISIBLE_DEVICES then name physical devices.
        env.pop("CUDA_VISIBLE_DEVICES", None)
        return env

    def _control(self, command: str) -> subprocess.CompletedProcess[str]:
        binary = self._binary()
        try:
            return subprocess.run(
                [binary],
                input=command + "\n",
                env=self._process_env(),
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise MpsError(
                f"`echo {command} | {self.control_binary}` did not answer within {self.timeout_s:g} s "
                f"(pipe dir {self.pipe_dir})"
            ) from None

    # ------------------------------------------------------------------------------------- queries
    def is_running(self) -> bool:
        """Health check: does a control daemon answer on our pipe directory?"""
        if not any(self.pipe_dir.glob("*")):
            return False  # nothing was ever started here: skip the subprocess
        return self._control("get_server_list").returncode == 0

    def server_pids(self) -> list[int]:
        """PIDs of the MPS servers the daemon runs (one per GPU user; empty until a client connects)."""
        result = self._control("get_server_list")
        if result.returncode != 0:
            raise MpsError(f"MPS control daemon not answering on {self.pipe_dir}: {_tail(result)}")
        return [int(tok) for tok in result.stdout.split() if tok.isdigit()]

    # ---------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        binary = self._binary()
        self.pipe_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.is_running():
            # Output goes to a file, not a pipe: a daemon that kept an inherited pipe open would make
            # us wait for EOF forever.
            start_log = self.log_dir / "ekya-start.log"
            with open(start_log, "w+", encoding="utf-8") as out:
                try:
                    result = subprocess.run(
                        [binary, "-d"],
                        env=self._process_env(),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        timeout=self.timeout_s,
                        check=False,
                    )
                except subprocess.TimeoutExpired:
                    raise MpsError(
                        f"`{self.control_binary} -d` did not return within {self.timeout_s:g} s"
                    ) from None
                out.seek(0)
                output = out.read().strip()[-400:] or "no output"
            if result.returncode != 0:
                raise MpsError(
                    f"`{self.control_binary} -d` failed (exit {result.returncode}): {output}; "
                    f"see {self.log_dir / 'control.log'}"
                )
            if not self._wait_for(running=True):
                raise MpsError(
                    f"the MPS control daemon started but does not answer on {self.pipe_dir}; "
                    f"see {self.log_dir / 'control.log'}"
                )
        if not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True

    def stop(self) -> None:
        """Ask the daemon to quit and wait until it is gone. A no-op if it is not running."""
        try:
            if self.is_running():
                result = self._control("quit")
                if result.returncode != 0 and self.is_running():
                    raise MpsError(f"`echo quit | {self.control_binary}` failed: {_tail(result)}")
                if not self._wait_for(running=False):
                    raise MpsError(
                        f"the MPS control daemon on {self.pipe_dir} did not exit within {self.timeout_s:g} s"
                    )
        finally:
            if self._atexit_registered:
                atexit.unregister(self._stop_at_exit)
                self._atexit_registered = False

    def _stop_at_exit(self) -> None:
        try:
            self.stop()
        except (MpsError, OSError) as exc:  # at exit there is no one left to raise to
            print(f"warning: could not stop the MPS control daemon: {exc}", flush=True)

    def _wait_for(self, *, running: bool) -> bool:
        deadline = time.monotonic() + self.timeout_s
        while True:
            if self.is_running() == running:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def env_for_share(
        self, share: float, device_index: int, *, memory_limit_bytes: int | None = None
    ) -> dict[str, str]:
        """`env_for_share` for a client of this daemon."""
        return env_for_share(
            share,
            device_index,
            pipe_dir=self.pipe_dir,
            log_dir=self.log_dir,
            memory_limit_bytes=memory_limit_bytes,
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MpsDaemon(base_dir={str(self.base_dir)!r})"


def _tail(result: subprocess.CompletedProcess[str], limit: int = 400) -> str:
    text = (result.stderr or "").strip() or (result.stdout or "").strip() or "no output"
    return text[-limit:]


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
