"""Planning a window: each camera's retraining options (micro-profiled, or the fixed config of a static
scheduler), forecast one window ahead and scaled by the jobs' measured costs, then the scheduler's plan;
and re-planning with the time left when a job completes."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from controller.planner import CameraState, CameraStatus, Plan, Problem, RetrainOption, plan, replan
from controller.planner.drift import forecast
from controller.reconcile.context import Trial, WindowContext
from controller.reconcile.ports import ProfiledOptions
from controller.reconcile.scope import Scope
from controller.trainers import PUBLISH_SECONDS, WORKER_STARTUP_SECONDS
from trainer.streams.base import WindowData, WindowDataError

log = logging.getLogger("controller")

# A profiler's trial model is served only if it beats the serving model on the window's held-out data by
# this much (a few hundred held-out crops: smaller differences are mostly noise).
TRIAL_MARGIN = 0.02


class WindowPlanner:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.ahead: dict[int, dict] = {}  # window -> camera -> AheadProfile (taken before the window closed)

    def plan_window(self, context: WindowContext) -> tuple[Plan, float]:
        """The window's plan and the seconds its micro-profiling took."""
        scope = self.scope
        state = scope.state
        data_window = context.window - 1
        loaded: dict[str, tuple[WindowData, WindowData]] = {}
        for name in scope.config.camera_names:  # the closed window's labelled data, from disk (restart-safe)
            data = self.window_data(name, data_window) if data_window >= 0 else None
            if data is not None:
                directory = scope.layout.window_dir(data_window, name)
                context.data[name] = (directory / "train.npz", directory / "test.npz")
                loaded[name] = data
        context.cost = scope.ledger.cost_correction()
        profiling_started = scope.clock.monotonic()
        cameras = []
        for name in scope.config.camera_names:
            cam = state.cameras[name]
            try:
                options = self.options_for(name, context, loaded[name]) if name in loaded else []
            except Exception:  # one camera's bad data must not stop the others' plan
                log.exception("%s: micro-profiling failed; no retraining this window", name)
                options = []
            accuracy = cam.serving_accuracy if cam.serving_accuracy is not None else (cam.live_accuracy or 0.0)
            growth = scope.growth(name)
            if growth > 1.0:
                options = [dataclasses.replace(o, end_accuracy=forecast(o.end_accuracy, growth)) for o in options]
            if not context.cost.identity:
                options = [dataclasses.replace(o, gpu_seconds=context.cost.apply(o.gpu_seconds)) for o in options]
            context.options[name] = {o.config: o for o in options}
            cameras.append(CameraState(name, forecast(float(accuracy), growth), tuple(options)))
        profiling_seconds = scope.clock.monotonic() - profiling_started
        time_left = max(1.0, context.started + state.window_seconds - scope.clock.time())
        context.problem = Problem(cameras=tuple(cameras), gpus=int(scope.capacity) if scope.gpu else 1,
                                  window=time_left, inference=scope.inference, throughput=scope.throughput,
                                  delta=scope.config.delta, a_min=scope.config.scheduler.min_inference_accuracy,
                                  job_latency=self.job_latency())
        context.plan = plan(context.problem, scope.scheduler.name, **self.scheduler_parameters())
        return context.plan, profiling_seconds

    def scheduler_parameters(self) -> dict[str, object]:
        """The scheduler's plan parameters, read from the config's `scheduler:` section."""
        scope = self.scope
        params: dict[str, object] = {key: getattr(scope.config.scheduler, field)
                                     for key, field in scope.scheduler.parameters.items()}
        if scope.scheduler.fixed_config:
            params["fixed_config"] = scope.config.fixed_retraining_config.name
        return params

    def job_latency(self) -> float:
        """Fixed wall seconds from a job's launch to its model serving, beyond its training: measured on
        this deployment's published jobs, or the start-up and publish estimate before the first."""
        measured = self.scope.state.job_latency_seconds
        return measured if measured is not None else WORKER_STARTUP_SECONDS + PUBLISH_SECONDS

    def window_data(self, name: str, window: int) -> tuple[WindowData, WindowData] | None:
        """The camera's (train, test) data of a closed window, read here so that a corrupt file is
        quarantined before a trainer is given it; None where there is none (or it was corrupt)."""
        directory = self.scope.layout.window_dir(window, name)
        paths = (directory / "train.npz", directory / "test.npz")
        if not all(p.is_file() for p in paths):
            return None
        data = []
        for path in paths:
            try:
                data.append(WindowData.load(path))
            except WindowDataError as exc:
                self.scope.quarantine.move(name, path, exc)
        if len(data) < len(paths):
            log.warning("%s: window %d's data is corrupt (quarantined); no retraining on it", name, window)
            return None
        return data[0], data[1]

    def options_for(self, name: str, context: WindowContext,
                    data: tuple[WindowData, WindowData]) -> list[RetrainOption]:
        """Retraining options for one camera: micro-profiled, or the fixed config of a static scheduler."""
        scope = self.scope
        scheduler = scope.scheduler
        cam = scope.state.cameras[name]
        if not scheduler.retrains or not cam.serving_checkpoint:
            return []
        if scheduler.fixed_config:
            # Static baselines run their fixed config without profiling; the option only names it.
            fixed = scope.config.fixed_retraining_config
            return [RetrainOption(name, fixed.name, float(cam.serving_accuracy or 0.0), 0.0)]
        ahead = self.ahead.get(context.window - 1, {}).get(name)
        if ahead is not None and cam.serving_version in ahead.versions:
            # profiled before the window closed, on most of its data: reused (the serving model's accuracy
            # on the whole window's held-out data was measured at the close). A job trains on the whole
            # window, the profile saw its first part: the costs grow with the data.
            profile = ahead.profile
            grown = max(1.0, data[0].num_labelled / profile.train_crops) if profile.train_crops else 1.0
            return [dataclasses.replace(o, gpu_seconds=o.gpu_seconds * grown) for o in self._observed(name, profile)]
        profile = self.profile(name, *data)
        cam.serving_accuracy = profile.start_accuracy
        if self.trial_wins(profile):
            context.trials[name] = Trial(profile.trial_checkpoint, profile.trial_accuracy,
                                         profile.start_accuracy, profile.trial_kind)
        return self._observed(name, profile)

    def _observed(self, name: str, profile: ProfiledOptions) -> list[RetrainOption]:
        """The profile's options, recorded for the camera's config pruning."""
        pruner = self.scope.pruner(name)
        pruner.observe(profile.options, profile.start_accuracy)
        pruner.end_window()
        return list(profile.options)

    def profile(self, name: str, train: WindowData, test: WindowData) -> ProfiledOptions:
        """Micro-profile the camera's active configs from its serving model, within its profiling budget."""
        scope = self.scope
        configs = scope.configs
        active = [configs[c] for c in scope.pruner(name).active if c in configs]
        mp = scope.config.microprofiler
        budget = mp.budget_fraction * scope.state.window_seconds * scope.capacity / max(1, len(scope.config.cameras))
        checkpoint = Path(scope.state.cameras[name].serving_checkpoint or "")
        return scope.profiler.profile(name, checkpoint, train, test, active,
                                      budget * (1 if scope.gpu else scope.cores))

    def trial_wins(self, profile: ProfiledOptions) -> bool:
        return (self.scope.config.microprofiler.serve_trials and profile.trial_checkpoint is not None
                and profile.trial_accuracy is not None
                and profile.trial_accuracy > profile.start_accuracy + TRIAL_MARGIN)

    def replan(self, context: WindowContext) -> Plan | None:
        """The scheduler re-run with the time left (a re-planning scheduler only), or None."""
        scope = self.scope
        if not scope.scheduler.replans or not scope.config.scheduler.replan_on_completion:
            return None
        if context.problem is None:
            return None
        running = {r.camera: r for r in scope.trainers.running()}
        statuses = []
        for cam in context.problem.cameras:
            job = running.get(cam.name)
            serving = scope.state.cameras[cam.name].serving_accuracy
            statuses.append(CameraStatus(
                name=cam.name,
                accuracy=forecast(float(serving), scope.growth(cam.name)) if serving is not None else cam.accuracy,
                running=job.config if job else None,
                progress=scope.trainers.progress(job.job_id) if job else 0.0,
                finished=cam.name in context.finished, started=cam.name in context.started_jobs))
        elapsed = scope.clock.time() - context.started
        context.plan = replan(context.problem, statuses, elapsed, scope.scheduler.name)
        return context.plan
