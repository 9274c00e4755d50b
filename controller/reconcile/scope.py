"""What every phase of the reconcile step works with: the deployment's config and state, the ports it
acts through, and the planner's inputs that outlive a window."""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.config import DeploymentConfig, GpuResources
from controller.layout import DataLayout
from controller.metrics import ControllerMetrics
from controller.planner import InferenceProfile, ThroughputCurve
from controller.planner.microprofile import ConfigPruner, PredictionLedger
from controller.planner.schedulers import Scheduler
from controller.reconcile.events import EventLog
from controller.reconcile.ports import (
    CameraChannel,
    Clock,
    DeviceChooser,
    Evaluator,
    Profiler,
    Retention,
    Serving,
    Trainers,
)
from controller.reconcile.publish import Publisher
from controller.state import ControllerState
from protocol.quarantine import Quarantine
from protocol.spool import Spool
from trainer.configs import RetrainConfig


@dataclass
class Scope:
    config: DeploymentConfig
    layout: DataLayout
    state: ControllerState
    scheduler: Scheduler
    serving: Serving
    trainers: Trainers
    profiler: Profiler
    cameras: CameraChannel
    choose_device: DeviceChooser
    clock: Clock
    metrics: ControllerMetrics
    events: EventLog
    publisher: Publisher
    inference: InferenceProfile
    throughput: ThroughputCurve
    cores: int
    ledger: PredictionLedger = field(default_factory=PredictionLedger)
    pruners: dict[str, ConfigPruner] = field(default_factory=dict)
    camera_windows: int | None = None  # cameras are told to stop after this many windows (demos)
    retention: Retention | None = None  # None: nothing is ever deleted (tests of other phases)
    evaluate: Evaluator | None = None  # measures a kept checkpoint (automatic rollback); None: no such checks

    @property
    def gpu(self) -> bool:
        return isinstance(self.config.resources, GpuResources)

    @property
    def capacity(self) -> float:
        """G: the compute planned over, in GPUs (or one whole CPU)."""
        return float(self.config.resources.count) if self.gpu else 1.0

    @property
    def configs(self) -> dict[str, RetrainConfig]:
        return {c.name: c for c in self.config.retraining_configs}

    def spool(self, camera: str) -> Spool:
        """The camera's spool, with its part of the data directory's disk budget."""
        budget = int(self.config.data.disk_budget_mb * 2**20 / max(1, len(self.config.cameras)))
        return Spool(self.layout, camera, budget, self.quarantine, num_classes=len(self.config.classes))

    @property
    def quarantine(self) -> Quarantine:
        """Where a camera's corrupt data files go, each counted in the metrics."""
        return Quarantine(self.layout, lambda moved: self.metrics.record_quarantined(moved.camera))

    def pruner(self, camera: str) -> ConfigPruner:
        period = self.config.microprofiler.prune_after_windows
        return self.pruners.setdefault(camera, ConfigPruner(configs=list(self.configs), period=period or 10**9))

    def growth(self, camera: str) -> float:
        """The camera's forecast error growth for the window being planned (1: plan on the closed window)."""
        if not self.scheduler.forecasts_drift or not self.config.scheduler.drift_forecast:
            return 1.0
        return self.state.cameras[camera].error_growth

    def window_start(self, window: int) -> float:
        return self.state.t0 + window * self.state.window_seconds

    def observe(self, camera: str) -> None:
        """The camera's serving state, as the metrics show it."""
        cam = self.state.cameras[camera]
        live = cam.live_accuracy if cam.live_accuracy is not None else cam.serving_accuracy
        self.metrics.observe_camera(camera, live_accuracy=live, retrained_accuracy=None,
                                    serving_version=cam.serving_version, inference_share=cam.inference_share,
                                    training_share=cam.training_share, instances=cam.instances,
                                    frame_stride=cam.stride)

    def tell_camera(self, camera: str) -> None:
        """Publish the camera's directive: the window clock and its frame stride."""
        state = self.state
        self.cameras.publish(camera, t0=state.t0, window_seconds=state.window_seconds,
                             stride=state.cameras[camera].stride, window=max(0, state.window),
                             stop_after_window=None if self.camera_windows is None else self.camera_windows - 1)

    def save(self) -> None:
        self.state.pruning = {"pruners": {n: p.to_dict() for n, p in self.pruners.items()},
                              "ledger": self.ledger.to_dict()}
        self.state.save(self.layout.state_file)
