"""What the controller plans over: a CPU's cores, or GPUs (with MPS, memory and measured throughput)."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .errors import LocatedError
from .fields import ConfigModel, ConfigPath

__all__ = ["CpuResources", "GpuResources", "Resources"]


class CpuResources(ConfigModel):
    """CPU-only mode: shares are fractions of `cores`."""

    mode: Literal["cpu"]
    cores: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=4096)


class GpuResources(ConfigModel):
    """GPU mode: shares are fractions of one GPU; `count` GPUs are planned over."""

    mode: Literal["gpu"]
    count: int = Field(1, ge=1, le=64)
    devices: list[Annotated[int, Field(ge=0)]] | None = None  # CUDA indices; default 0..count-1
    memory_gb: float | None = Field(None, gt=0.0, le=4096.0)  # per GPU; default: what pynvml reports
    mps: bool = True  # run trainers as MPS clients with CUDA_MPS_ACTIVE_THREAD_PERCENTAGE
    mps_dir: ConfigPath | None = None  # private MPS pipe/log dirs; default <data.dir>/mps
    # training img/s per MPS share as bench/train_throughput.py writes it; default: linear in the share.
    # Read when the controller starts (it may name a path inside the controller's container).
    throughput_profile: ConfigPath | None = None
    # each trainer's device memory, at most (MPS clients only: CUDA_MPS_PINNED_DEVICE_MEM_LIMIT): a job that
    # needs more fails with out-of-memory in its own process, and can never take the memory Triton serves from
    trainer_memory_mb: int | None = Field(None, ge=256, le=4_194_304)

    @model_validator(mode="after")
    def _devices_match_count(self) -> GpuResources:
        if self.devices is not None:
            if len(self.devices) != self.count:
                raise LocatedError(
                    ("devices",),
                    f"lists {len(self.devices)} device(s) but count is {self.count}; "
                    "expected exactly `count` device indices",
                )
            if len(set(self.devices)) != len(self.devices):
                raise LocatedError(("devices",), f"device indices must be unique, got {self.devices}")
        if self.trainer_memory_mb is not None and not self.mps:
            raise LocatedError(("trainer_memory_mb",), "is an MPS client limit: it needs `mps: true`")
        return self

    @property
    def device_indices(self) -> list[int]:
        return list(self.devices) if self.devices is not None else list(range(self.count))


Resources = Annotated[CpuResources | GpuResources, Field(discriminator="mode")]
