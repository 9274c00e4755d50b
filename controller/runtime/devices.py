"""Where trainers run: the CPU, or a GPU of the deployment with the free memory a trainer needs (read
through NVML before launch), with MPS started for GPU shares where configured."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from controller.config import DeploymentConfig, GpuResources
from trainer.jobs import TRAINER_MIN_FREE_MEMORY_MB

log = logging.getLogger("controller")


class TrainingDevices:
    def __init__(self, config: DeploymentConfig) -> None:
        self.config = config
        self.gpu = isinstance(config.resources, GpuResources)
        self.mps = None

    def start(self) -> None:
        if not self.gpu or not self.config.resources.mps:
            return
        from controller.gpu import MpsDaemon, MpsError

        try:
            self.mps = MpsDaemon(self.config.mps_dir)
            self.mps.start()
        except MpsError as exc:
            log.warning("MPS unavailable (%s); trainers share the GPU by time-slicing", exc)
            self.mps = None

    def stop(self) -> None:
        if self.mps is not None:
            self.mps.stop()

    def worker_env(self) -> Callable | None:
        """gpu_env(share, device_index) -> the environment of a GPU trainer; None on a CPU deployment."""
        if not self.gpu:
            return None
        from controller.gpu import env_for_share

        gpu_env = self.mps.env_for_share if self.mps is not None else env_for_share
        limit_mb = getattr(self.config.resources, "trainer_memory_mb", None)
        if limit_mb is not None and self.mps is not None:  # the limit is an MPS client setting
            gpu_env = functools.partial(gpu_env, memory_limit_bytes=limit_mb * 2**20)
        return gpu_env

    def choose(self, planned_index: int | None) -> str:
        """The reconcile core's DeviceChooser: the torch device of a trainer planned on `planned_index`."""
        if not self.gpu:
            return "cpu"
        from controller.gpu import choose_training_device

        devices = self.config.resources.device_indices
        planned = devices[planned_index] if planned_index is not None and planned_index < len(devices) else devices[0]
        physical = choose_training_device(planned, devices, TRAINER_MIN_FREE_MEMORY_MB * 2**20)
        if physical != planned:
            log.warning("GPU %d has too little free memory for a trainer; it starts on GPU %d", planned, physical)
        return f"cuda:{physical}"
