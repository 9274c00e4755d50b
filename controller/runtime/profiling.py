"""The torch micro-profiler behind the reconcile core's Profiler port: runs controller.microprofiler on
the camera's serving checkpoint and keeps the best trial model as a checkpoint to publish."""

from __future__ import annotations

from pathlib import Path

from controller.planner import ThroughputCurve
from controller.reconcile.ports import ProfiledOptions
from trainer.configs import RetrainConfig
from trainer.streams.base import WindowData


class TorchProfiler:
    def __init__(self, trials_dir: Path, *, subsample: float, epochs: int, profile_share: float,
                 throughput: ThroughputCurve, device: str) -> None:
        self.trials_dir = Path(trials_dir)
        self.subsample = subsample
        self.epochs = epochs
        self.profile_share = profile_share
        self.throughput = throughput
        self.device = device

    def profile(self, camera: str, checkpoint: Path, train: WindowData, test: WindowData,
                configs: list[RetrainConfig], budget_seconds: float) -> ProfiledOptions:
        from controller.microprofiler import profile_camera
        from trainer.models import load_model, save_model

        result = profile_camera(load_model(checkpoint), train, test, configs, subsample=self.subsample,
                                epochs=self.epochs, budget_seconds=budget_seconds, profile_share=self.profile_share,
                                throughput=self.throughput, device=self.device)
        trial = None
        if result.trial_model is not None:
            self.trials_dir.mkdir(parents=True, exist_ok=True)
            trial = save_model(result.trial_model, self.trials_dir / f"{camera}.pt", camera=camera, trial=True)
        return ProfiledOptions(result.start_accuracy, list(result.options), trial, result.trial_accuracy,
                             result.trial_kind, train_crops=train.num_labelled)
