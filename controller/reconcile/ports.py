"""What the reconcile step acts through. The real implementations are in controller.runtime; tests pass
in-memory fakes (tests/controller/reconcile/fakes.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from controller.gpu import GpuMemoryError
from controller.planner.profiles import RetrainOption
from controller.state import ControllerState, JobRecord
from controller.trainers import Finished
from trainer.configs import RetrainConfig
from trainer.streams.base import WindowData

__all__ = ["CameraChannel", "ProfiledOptions", "Clock", "DeviceChooser", "Evaluator", "Exporter", "Finished",
           "GpuMemoryError", "Profiler", "Retention", "Serving", "SystemClock", "Trainers"]


class Clock(Protocol):
    def time(self) -> float: ...  # wall clock (the deployment's window clock is wall time)

    def monotonic(self) -> float: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class Serving(Protocol):
    """The inference server as the controller uses it (Triton: controller.runtime.serving)."""

    def golden_labels(self, images: np.ndarray) -> np.ndarray: ...

    def accuracy(self, model: str, images: np.ndarray, labels: np.ndarray) -> float | None: ...

    def publish(self, model: str, onnx_path: Path) -> int:
        """Validate, add as the model's newest version and load it; returns the version. Raises on any
        failure, the previous version still serving."""
        ...

    def set_instances(self, model: str, count: int, gpus: tuple[int, ...] | None) -> None: ...

    def served_versions(self, models: list[str]) -> dict[str, int | None]:
        """The version each model serves now, from the server's repository index (None: not loaded).
        Raises when the server cannot be asked."""
        ...

    def repository_versions(self, model: str) -> list[int]:
        """The versions on disk in the model repository, oldest first."""
        ...

    def retire_version(self, model: str, version: int, reason: str) -> None:
        """Take a version out of the repository (kept aside with the reason) and reload the model, so
        the newest remaining version serves."""
        ...


class Trainers(Protocol):
    """Retraining processes (controller.trainers.TrainerPool)."""

    def launch(self, *, job_id: str, camera: str, window: int, config: RetrainConfig, base_checkpoint: Path,
               data: Path, validation: Path | None, share: float, device: str = "cpu",
               predicted_accuracy: float | None = None, predicted_seconds: float | None = None,
               cost_scale: float = 1.0, cost_overhead: float = 0.0) -> JobRecord: ...

    def poll(self) -> list[Finished]: ...

    def stop_all(self, timeout_s: float = 20.0) -> list[Finished]: ...

    def running(self) -> list[JobRecord]: ...

    def progress(self, job_id: str) -> float: ...

    def set_share(self, job_id: str, share: float) -> None: ...


@dataclass
class ProfiledOptions:
    """What micro-profiling a camera gives the planner: its retraining options, the serving model's
    accuracy on the held-out data, and the best trial run's model (saved as a checkpoint) with its
    held-out accuracy."""

    start_accuracy: float
    options: list[RetrainOption]
    trial_checkpoint: Path | None = None
    trial_accuracy: float | None = None
    trial_kind: str | None = None
    train_crops: int = 0  # the labelled training crops it was profiled on (0: not recorded)


class Profiler(Protocol):
    def profile(self, camera: str, checkpoint: Path, train: WindowData, test: WindowData,
                configs: list[RetrainConfig], budget_seconds: float) -> ProfiledOptions: ...


class Exporter(Protocol):
    def __call__(self, checkpoint: Path, onnx_path: Path) -> None:
        """Write the checkpoint's model as ONNX."""
        ...


class Evaluator(Protocol):
    def __call__(self, checkpoint: Path, data: WindowData) -> float:
        """The checkpoint's model's accuracy on the labelled crops of `data` (a model not served now)."""
        ...


class CameraChannel(Protocol):
    """What the controller tells cameras (the window clock, the frame stride); it reads nothing back."""

    def publish(self, camera: str, *, t0: float, window_seconds: float, stride: float, window: int,
                stop_after_window: int | None) -> None: ...


class DeviceChooser(Protocol):
    def __call__(self, planned_index: int | None) -> str:
        """The torch device a trainer planned on device `planned_index` starts on ("cpu" on a CPU
        deployment); raises GpuMemoryError when it must not start."""
        ...


class Retention(Protocol):
    """Keeps the data directory within its disk budget (controller.retention)."""

    def enforce(self, state: ControllerState) -> object:
        """Delete what is no longer needed by the state's reckoning; may move the state's oldest window
        records out of it (the caller saves the state after)."""
        ...
