"""The retraining-window loop: one readable reconcile step per window, plus a monitor for trainers.

tick() runs at every window boundary (an APScheduler interval job, see controller.service):
  1. end the previous window: stop its unfinished trainers (publishing a best checkpoint that wins);
  2. close the previous window's data: gather the cameras' spooled frames, label them with the golden
     model through Triton (label_ahead() has labelled all but the last chunk during the window), hold
     part out as the window's test set, measure the serving models on it;
  3. micro-profile the candidate configs (within the profiling budget; or reuse profile_ahead()'s profile,
     taken shortly before the close) and plan with the scheduler;
  4. apply: Triton instance counts, camera frame strides, trainer processes with their shares; serve the
     profiler's best trial model where it beats the serving one while the full retraining runs.
monitor() runs every second: a finished trainer's model is tested on the held-out data and published
(hot swap) only if it beats the serving model; then the scheduler is re-run with the time left.
All state that matters is persisted atomically (controller.state); a restarted controller kills the
trainers its predecessor left, reattaches to the embedded Triton, and resumes at the next tick.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from controller.config import DeploymentConfig, GpuResources
from controller.labelling import GOLDEN_MODEL, accuracy_through_triton, golden_labels
from controller.layout import DataLayout
from controller.metrics import ControllerMetrics
from controller.planner import (
    CameraState,
    CameraStatus,
    InferenceProfile,
    Plan,
    Problem,
    RetrainOption,
    plan,
    replan,
)
from controller.planner.drift import Measurement, error_growth, forecast
from controller.planner.microprofile import ConfigPruner, Outcome, PredictionLedger
from controller.planner.objective import throughput_time
from controller.profiles_io import deployment_throughput
from controller.state import CameraRecord, ControllerState, WindowRecord
from controller.trainers import PUBLISH_SECONDS, WORKER_STARTUP_SECONDS, Finished, TrainerPool, kill_orphans
from controller.triton.client import TritonClient
from controller.triton.repository import ModelRepository
from controller.triton.server import TritonServer, new_admin_key_file
from controller.triton.serving import PublishError, ServingManager
from controller.triton.spec import ModelSpec
from protocol.directives import CameraDirective, write_directive
from protocol.spool import Spool
from trainer.configs import RetrainConfig
from trainer.jobs import TRAINER_MIN_FREE_MEMORY_MB
from trainer.streams.base import WindowData

log = logging.getLogger(__name__)

# A profiler's trial model is served only if it beats the serving model on the window's held-out data by
# this much (a few hundred held-out crops: smaller differences are mostly noise).
TRIAL_MARGIN = 0.02

MAX_STRIDE = 1000  # "no inference": a camera with no share processes (almost) nothing


@dataclass
class WindowContext:
    """What the current window's plan was made from (kept in memory; rebuilt next tick after a crash)."""

    window: int
    started: float  # wall-clock start of the window
    problem: Problem | None = None
    plan: Plan | None = None
    data: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # camera -> (train.npz, test.npz)
    options: dict[str, dict[str, RetrainOption]] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    started_jobs: set[str] = field(default_factory=set)
    redistributed: set[str] = field(default_factory=set)  # finished cameras whose share was handed on
    trials: dict[str, tuple[object, float, str | None]] = field(default_factory=dict)  # camera -> best trial
    # (model, held-out accuracy, the profile run that trained it)
    cost_scale: float = 1.0  # predicted job costs were multiplied by this for the plan (the ledger's)


@dataclass
class AheadProfile:
    """A camera's micro-profile taken before its window closed, and the serving versions it is valid for
    (the one it profiled and, if served, its own trial model)."""

    profile: object  # controller.microprofiler.CameraProfile
    versions: set[int]
    chunks: int = 0  # spooled chunks of the window it was taken on (a later run with no new data is skipped)


class Controller:
    def __init__(self, config: DeploymentConfig, *, scheduler: str | None = None, max_windows: int | None = None,
                 metrics: ControllerMetrics | None = None, bootstrap_progress: bool = True,
                 models_cache: Path | None = None, camera_windows: int | None = None) -> None:
        self.config = config
        self.scheduler = scheduler or config.scheduler.name
        self.max_windows = max_windows
        self.layout = DataLayout(Path(config.data.dir))
        self.gpu = isinstance(config.resources, GpuResources)
        self.cores = (os.cpu_count() or 1) if self.gpu else config.resources.cores
        self.capacity = float(config.resources.count) if self.gpu else 1.0  # G, in GPUs (or whole CPUs)
        self.metrics = metrics or ControllerMetrics()
        self.lock = threading.RLock()
        self.done = threading.Event()
        self.bootstrap_progress = bootstrap_progress
        self.models_cache = models_cache
        self.camera_windows = camera_windows  # tell cameras to stop after this many windows (demos)
        self.state: ControllerState | None = None
        self.server: TritonServer | None = None
        self.client: TritonClient | None = None
        self.serving: ServingManager | None = None
        self.pool: TrainerPool | None = None
        self.mps = None
        self.window: WindowContext | None = None
        self.pruners: dict[str, ConfigPruner] = {}
        self.ahead: dict[int, dict[str, AheadProfile]] = {}  # window -> camera -> profile taken before it closed
        self._profiling_ahead = threading.Lock()
        self._in_flight = config.inference.label_requests_in_flight
        self.ledger = PredictionLedger()
        self.configs = {c.name: c for c in config.retraining_configs}
        self.inference_profile = InferenceProfile(full_share=config.inference.full_share)
        self.throughput = deployment_throughput(config.resources, self.cores)

    # ================================================================ lifecycle
    def start(self) -> None:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        import torch

        torch.set_num_threads(1)  # the controller's own torch work (profiling, export) stays off the trainers' cores
        state = ControllerState.load(self.layout.state_file)
        if state is None:
            state = ControllerState(t0=time.time() + 1.0, window_seconds=self.config.window_seconds,
                                    cameras={name: CameraRecord() for name in self.config.camera_names})
        else:
            log.info("resuming: window %d, %d trainer(s) recorded as running", state.window, len(state.jobs))
            kill_orphans(state.jobs)
            state.jobs.clear()
            for name in self.config.camera_names:
                state.cameras.setdefault(name, CameraRecord())
        self.state = state
        self.pruners = {name: ConfigPruner.from_dict(d) for name, d in state.pruning.get("pruners", {}).items()}
        if "ledger" in state.pruning:
            self.ledger = PredictionLedger.from_dict(state.pruning["ledger"])
        self._start_gpu_support()
        gpu_env = None
        if self.gpu:
            from controller.gpu import env_for_share

            gpu_env = self.mps.env_for_share if self.mps is not None else env_for_share
            limit_mb = getattr(self.config.resources, "trainer_memory_mb", None)
            if limit_mb is not None and self.mps is not None:  # the limit is an MPS client setting
                gpu_env = functools.partial(gpu_env, memory_limit_bytes=limit_mb * 2**20)
        self.pool = TrainerPool(self.layout.jobs_dir, cores=self.cores, gpu_env=gpu_env)
        from controller.inference_profile import measured_profile

        self.inference_profile = measured_profile(self.config)
        self._ensure_triton()
        self._ensure_models()
        if state.window < 0:  # a fresh deployment's clock starts once its models serve (bootstrap takes a while)
            state.t0 = time.time() + 1.0
        self.metrics.set_window_length(self.config.window_seconds)
        for name, record in state.cameras.items():
            self._publish_directive(name, record.stride)
            self._observe(name)
        self._save()

    def shutdown(self, stop_triton: bool = True) -> None:
        with self.lock:
            if self.pool is not None:
                for finished in self.pool.stop_all(timeout_s=10.0):
                    log.info("%s: trainer %s stopped at shutdown", finished.record.camera, finished.record.job_id)
                self.pool.close()
            if self.state is not None:
                self.state.jobs.clear()
                self._save()
            if self.client is not None:
                self.client.close()
            if stop_triton and self.server is not None:
                self.server.stop()
            if self.mps is not None:
                self.mps.stop()

    # ================================================================ the window step
    def tick(self) -> None:
        """Close the window that just ended and open the current one (idempotent within a window)."""
        with self.lock:
            state = self._state
            now = time.time()
            current = int((now - state.t0) // state.window_seconds)
            if current <= state.window:
                return
            if state.window >= 0 and current > state.window + 1:
                log.warning("late tick: windows %d..%d passed unplanned (coalesced)", state.window + 1, current - 1)
            started = time.monotonic()
            previous = current - 1
            close_seconds = 0.0
            if previous >= 0 and state.closed < previous:
                self._end_window_jobs()
                closing = time.monotonic()
                self._close_window(previous)
                close_seconds = time.monotonic() - closing
                state.closed = previous
                self._save()
                self.metrics.record_window(time.time() - (state.t0 + previous * state.window_seconds))
            if self.max_windows is not None and current >= self.max_windows:
                self.metrics.tick(window=current)
                self.done.set()  # the current window stays unplanned: a later controller plans it
                return
            state.window = current
            self.window = WindowContext(current, state.t0 + current * state.window_seconds)
            self._plan_and_apply(previous, close_seconds)
            self.metrics.tick(window=current)
            self.metrics.record_step(time.monotonic() - started)
            self._save()

    def monitor(self) -> None:
        """Every second: handle finished trainers, re-plan with the time left."""
        if not self.lock.acquire(blocking=False):
            return  # a tick is running; it handles trainers itself
        try:
            if self.pool is None or self.window is None:
                return
            finished = self.pool.poll()
            for item in finished:
                self._on_finished(item)
            if finished:
                self._replan()
                self._save()
        finally:
            self.lock.release()

    # ---------------------------------------------------------------- closing a window
    def _close_window(self, window: int) -> None:
        state = self._state
        record = state.record_for(window)
        self._wait_for_camera_results(window, timeout_s=min(5.0, 0.1 * state.window_seconds))
        for name in self.config.camera_names:
            cam = state.cameras[name]
            result = _read_json(self.layout.result_file(name, window))
            if result is not None:
                cam.live_accuracy = result.get("accuracy")
                self.metrics.record_inference(name, int(result.get("requests", 0)),
                                              int(result.get("failed_requests", 0)))
                if record is not None:
                    record.cameras.setdefault(name, {})["window_accuracy"] = result.get("accuracy")
            spool = self._spool(name)
            data, truth = spool.read_window(window)
            spool.drop_windows_before(window)
            if len(data) < 10:
                log.warning("%s: only %d spooled crops for window %d; no retraining data", name, len(data), window)
                continue
            labels = data.labels.copy()  # golden labels of the chunks labelled during the window
            missing = labels < 0
            if missing.any():
                labels[missing] = golden_labels(self.client, data.images[missing], in_flight=self._in_flight)
            labelled = data.with_labels(labels)
            train, test = labelled.split(self.config.data.holdout_fraction, seed=window)
            directory = self.layout.window_dir(window, name)
            train.save(directory / "train.npz")
            test.save(directory / "test.npz")
            serving_accuracy = accuracy_through_triton(self.client, name, test.images, test.labels,
                                                       in_flight=self._in_flight)
            cam.serving_accuracy = serving_accuracy
            cam.record_accuracy(window, cam.serving_version, serving_accuracy)
            cam.error_growth = error_growth([Measurement(*m) for m in cam.accuracy_history], cam.error_growth)
            if record is not None:
                entry = record.cameras.setdefault(name, {})
                entry["serving_accuracy_on_new_data"] = serving_accuracy
                if truth is not None:
                    entry["golden_label_accuracy"] = float((labels == truth).mean())
            self._observe(name)

    def _spool(self, name: str) -> Spool:
        """The camera's spool, with its part of the data directory's disk budget."""
        return Spool(self.layout, name, int(self.config.data.disk_budget_mb * 2**20 / max(1, len(self.config.cameras))))

    def label_ahead(self) -> None:
        """Golden-label the open window's spooled chunks as they arrive (every few seconds), so closing
        the window only labels its last chunk: the labels, and so the window's retraining, come sooner."""
        state = self._state
        window = state.window
        if window < 0 or self.client is None or window <= state.closed:
            return
        for name in self.config.camera_names:
            spool = self._spool(name)
            for chunk in spool.unlabelled_chunks(window):
                try:
                    images = WindowData.load(chunk).images
                except (FileNotFoundError, ValueError):  # dropped by the disk budget meanwhile
                    continue
                spool.write_labels(chunk, golden_labels(self.client, images, in_flight=self._in_flight))

    def _wait_for_camera_results(self, window: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.layout.result_file(n, window).exists() for n in self.config.camera_names):
                return
            time.sleep(0.1)

    # ---------------------------------------------------------------- planning
    def _plan_and_apply(self, data_window: int, close_seconds: float = 0.0) -> None:
        assert self.window is not None
        state = self._state
        context = self.window
        for name in self.config.camera_names:  # the closed window's labelled data, from disk (restart-safe)
            directory = self.layout.window_dir(data_window, name)
            if data_window >= 0 and (directory / "train.npz").is_file() and (directory / "test.npz").is_file():
                context.data[name] = (directory / "train.npz", directory / "test.npz")
        time_left = max(1.0, context.started + state.window_seconds - time.time())
        cameras = []
        context.cost_scale = self.ledger.cost_scale()
        profiling_started = time.monotonic()
        for name in self.config.camera_names:
            cam = state.cameras[name]
            try:
                options = self._options_for(name, context, time_left) if name in context.data else []
            except Exception:  # one camera's bad data must not stop the others' plan
                log.exception("%s: micro-profiling failed; no retraining this window", name)
                options = []
            accuracy = cam.serving_accuracy if cam.serving_accuracy is not None else (cam.live_accuracy or 0.0)
            growth = self._growth(name)
            if growth > 1.0:
                options = [dataclasses.replace(o, end_accuracy=forecast(o.end_accuracy, growth)) for o in options]
            if context.cost_scale != 1.0:
                options = [dataclasses.replace(o, gpu_seconds=o.gpu_seconds * context.cost_scale) for o in options]
            context.options[name] = {o.config: o for o in options}
            cameras.append(CameraState(name, forecast(float(accuracy), growth), tuple(options)))
        profiling_seconds = time.monotonic() - profiling_started
        time_left = max(1.0, context.started + state.window_seconds - time.time())
        context.problem = Problem(cameras=tuple(cameras), gpus=int(self.capacity) if self.gpu else 1,
                                  window=time_left, inference=self.inference_profile,
                                  throughput=self.throughput, delta=self.config.delta,
                                  a_min=self.config.scheduler.min_inference_accuracy,
                                  job_latency=self._job_latency())
        fixed = self.config.fixed_retraining_config.name
        if self.scheduler in ("fair", "uniform"):
            fraction = (self.config.scheduler.fair_inference_weight if self.scheduler == "fair"
                        else self.config.scheduler.uniform_inference_fraction)
            result = plan(context.problem, self.scheduler, fixed_config=fixed, inference_fraction=fraction)
        else:
            result = plan(context.problem, self.scheduler)
        context.plan = result
        self.metrics.record_planning(result.plan_seconds)
        record = WindowRecord(window=context.window, scheduler=self.scheduler, plan_seconds=result.plan_seconds,
                              planned_accuracy=result.planned_accuracy)
        record.events.append(f"closed window {data_window} in {close_seconds:.1f}s (golden labels, serving "
                             f"accuracy); profiled {len(context.data)} camera(s) in {profiling_seconds:.1f}s; "
                             f"planned in {result.plan_seconds * 1000:.0f} ms at t+{time.time() - context.started:.1f}s")
        state.history.append(record)
        self._apply(result, start_jobs=True)
        for alloc in result.allocations:
            record.cameras[alloc.camera] = {
                "config": alloc.config, "inference_share": round(alloc.inference_share, 4),
                "training_share": round(alloc.training_share, 4), "stride": state.cameras[alloc.camera].stride,
                "serving_accuracy": state.cameras[alloc.camera].serving_accuracy,
                "error_growth": round(self._growth(alloc.camera), 3),
            }
        self._serve_trials()

    def _job_latency(self) -> float:
        """Fixed wall seconds from a job's launch to its model serving, beyond its training: measured on
        this deployment's published jobs, or the start-up and publish estimate before the first."""
        measured = self._state.job_latency_seconds
        return measured if measured is not None else WORKER_STARTUP_SECONDS + PUBLISH_SECONDS

    def _growth(self, name: str) -> float:
        """The camera's forecast error growth for the window being planned (1 = plan on the closed window)."""
        if self.scheduler not in ("thief", "ekya") or not self.config.scheduler.drift_forecast:
            return 1.0
        return self._state.cameras[name].error_growth

    def _options_for(self, name: str, context: WindowContext, time_left: float) -> list[RetrainOption]:
        """Retraining options for one camera: micro-profiled (thief), or the fixed config (fair/uniform)."""
        from trainer.models import load_model
        from trainer.streams.base import WindowData

        if self.scheduler == "noretrain":
            return []
        train_path, test_path = context.data[name]
        train, test = WindowData.load(train_path), WindowData.load(test_path)
        cam = self._state.cameras[name]
        model = load_model(cam.serving_checkpoint) if cam.serving_checkpoint else None
        if model is None:
            return []
        if self.scheduler in ("fair", "uniform"):
            fixed = self.config.fixed_retraining_config
            # Static baselines run their fixed config without profiling; the option only names it.
            return [RetrainOption(name, fixed.name, float(cam.serving_accuracy or 0.0), 0.0)]
        ahead = self.ahead.get(context.window - 1, {}).get(name)
        if ahead is not None and cam.serving_version in ahead.versions:
            # profiled before the window closed, on most of its data: reuse (the serving model's accuracy
            # on the whole window's held-out data was measured at the close)
            result = ahead.profile
        else:
            result = self._profile(name, model, train, test)
            cam.serving_accuracy = result.start_accuracy
            if self._trial_wins(result):
                context.trials[name] = (result.trial_model, result.trial_accuracy, result.trial_kind)
        pruner = self._pruner(name)
        pruner.observe(result.options, result.start_accuracy)
        pruner.end_window()
        return list(result.options)

    def _pruner(self, name: str) -> ConfigPruner:
        period = self.config.microprofiler.prune_after_windows
        return self.pruners.setdefault(name, ConfigPruner(configs=list(self.configs), period=period or 10**9))

    def _profile(self, name: str, model, train: WindowData, test: WindowData):
        """Micro-profile the camera's active configs from its serving `model` (a CameraProfile)."""
        from controller.microprofiler import profile_camera

        active = [self.configs[c] for c in self._pruner(name).active if c in self.configs]
        mp = self.config.microprofiler
        budget = mp.budget_fraction * self._state.window_seconds * self.capacity / max(1, len(self.config.cameras))
        profile_share = (1.0 / self.cores) if not self.gpu else 1.0
        return profile_camera(model, train, test, active, subsample=mp.subsample, epochs=mp.epochs,
                              budget_seconds=budget * (self.cores if not self.gpu else 1),
                              profile_share=profile_share, throughput=self.throughput,
                              device="cuda:0" if self.gpu else "cpu")

    def _training_cameras(self) -> set[str]:
        return {r.camera for r in self.pool.running()} if self.pool is not None else set()

    def _job_pending(self, name: str, window: int) -> bool:
        """The window's plan still means to start a retraining job for this camera."""
        context = self.window
        if context is None or context.window != window or context.plan is None:
            return False
        return (name not in context.finished and name not in context.started_jobs
                and any(a.camera == name and a.training_share > 0 and a.config for a in context.plan.allocations))

    def _trial_wins(self, result) -> bool:
        return (self.config.microprofiler.serve_trials and result.trial_model is not None
                and result.trial_accuracy is not None and result.trial_accuracy > result.start_accuracy + TRIAL_MARGIN)

    def profile_ahead(self) -> None:
        """profile_ahead_once, unless a run is already under way (the before-the-close and the during-the-
        window schedules may meet)."""
        if not self._profiling_ahead.acquire(blocking=False):
            return
        try:
            self.profile_ahead_once()
        finally:
            self._profiling_ahead.release()

    def profile_ahead_once(self) -> None:
        """Shortly before the window ends (microprofiler.ahead_seconds; thief/ekya), and every
        microprofiler.ahead_every_seconds during it when set: label what is spooled,
        micro-profile every camera on the window's data so far, and serve the best trial model where it
        beats the serving one. A camera whose job is still running is left to the close: that job's model
        is judged on the last window's held-out data against the serving model's accuracy there, which a
        trial measured on this window's data would replace. The rest of this window and the start of the
        next are served by a model trained on this window's frames, and the next window's plan needs no
        profiling of its own. A camera with no new spooled chunk since its last profile is skipped."""
        from trainer.models import load_model

        state = self._state
        window = state.window
        if self.scheduler not in ("thief", "ekya") or window < 0 or window <= state.closed or self.client is None:
            return
        self.label_ahead()
        profiles, profile_chunks = {}, {}
        earlier = self.ahead.get(window, {})
        training = self._training_cameras()
        for name in self.config.camera_names:
            cam = state.cameras[name]
            if name in training or self._job_pending(name, window):
                continue  # its job (on the last window's data) is still to be judged against the serving model
            spool = self._spool(name)
            chunks = len(spool.chunks(window))
            if name in earlier and earlier[name].chunks >= chunks:
                continue  # nothing new since this camera's last profile in this window (not read again)
            data = spool.read_window(window)[0].labelled()
            if data.num_labelled < 20 or not cam.serving_checkpoint:
                continue
            train, test = data.split(self.config.data.holdout_fraction, seed=window)  # the close's split, in part
            try:
                profiles[name] = (cam.serving_version, self._profile(name, load_model(cam.serving_checkpoint),
                                                                     train, test))
                profile_chunks[name] = chunks
            except Exception:  # the close profiles this camera again
                log.exception("%s: profiling ahead failed", name)
        with self.lock:
            if state.window != window or state.closed >= window:
                return  # the window closed meanwhile: its close profiles as usual
            self.ahead = {window: self.ahead.get(window, {})}  # a profile per camera: its latest
            record = state.record_for(window)
            if record is not None and profiles:
                record.events.append(f"t+{time.time() - (state.t0 + window * state.window_seconds):.0f}s profiled "
                                     f"{len(profiles)} camera(s) ahead of the close")
            training = self._training_cameras()
            for name, (version, profile) in profiles.items():
                if state.cameras[name].serving_version != version or name in training:
                    continue  # a retrained model was published meanwhile, or a job started
                ahead = self.ahead[window][name] = AheadProfile(profile, {version}, profile_chunks[name])
                if not self._trial_wins(profile):
                    continue
                entry = record.cameras.setdefault(name, {}) if record else {}
                served = self._serve_trial(name, profile.trial_model, profile.trial_accuracy,
                                           profile.start_accuracy, window, entry, "ahead_", profile.trial_kind)
                if served is not None:
                    ahead.versions.add(served)
                    if self.window is not None and self.window.window == window:
                        # a model trained on this window's frames is serving: no job on the last one's
                        self.window.finished.add(name)
            self._save()

    def _replan(self) -> None:
        context = self.window
        if context is None or context.problem is None or context.plan is None:
            return
        state = self._state
        elapsed = time.time() - context.started
        if elapsed >= state.window_seconds - 1.0:
            return
        running = {r.camera: r for r in self.pool.running()} if self.pool else {}
        if self.scheduler in ("thief", "ekya") and self.config.scheduler.replan_on_completion:
            statuses = []
            for cam in context.problem.cameras:
                job = running.get(cam.name)
                serving = state.cameras[cam.name].serving_accuracy
                statuses.append(CameraStatus(
                    name=cam.name,
                    accuracy=forecast(float(serving), self._growth(cam.name)) if serving is not None else cam.accuracy,
                    running=job.config if job else None,
                    progress=self.pool.progress(job.job_id) if job else 0.0,
                    finished=cam.name in context.finished, started=cam.name in context.started_jobs))
            result = replan(context.problem, statuses, elapsed, self.scheduler)
            context.plan = result
            self._apply(result, start_jobs=True)
            record = state.record_for(context.window)
            if record is not None:
                record.events.append(f"t+{elapsed:.0f}s re-planned: " + ", ".join(
                    f"{a.camera} inf {a.inference_share:.2f}/train {a.training_share:.2f}" for a in result.allocations))
        else:
            # The original's rule for static schedulers: a finished job's share is split equally over
            # the running trainers and all inference jobs.
            newly = [a for a in context.plan.allocations
                     if a.camera in context.finished and a.camera not in context.redistributed]
            context.redistributed.update(a.camera for a in newly)
            freed = sum(a.training_share for a in newly)
            if freed <= 0:
                return
            bonus = freed / (len(context.plan.allocations) + len(running))
            for alloc in context.plan.allocations:
                self._set_inference(alloc.camera, state.cameras[alloc.camera].inference_share + bonus)
            for job in running.values():
                self.pool.set_share(job.job_id, job.share + bonus)

    # ---------------------------------------------------------------- applying a plan
    def _apply(self, result: Plan, start_jobs: bool) -> None:
        context = self.window
        state = self._state
        running = {r.camera: r for r in self.pool.running()}
        for alloc in result.allocations:
            name = alloc.camera
            cam = state.cameras[name]
            self._set_inference(name, alloc.inference_share, alloc.inference_device)
            cam.training_share = alloc.training_share
            if name in running:
                if alloc.training_share > 0:
                    self.pool.set_share(running[name].job_id, alloc.training_share)
                continue
            cam.config = alloc.config
            if (start_jobs and context is not None and alloc.config and alloc.training_share > 0
                    and name in context.data and name not in context.finished and name not in context.started_jobs):
                self._start_job(name, alloc.config, alloc.training_share, alloc.training_device)
            self._observe(name)

    def _set_inference(self, name: str, share: float, device: int | None = None) -> None:
        cam = self._state.cameras[name]
        cam.inference_share = share
        raw = self.inference_profile.stride(share)
        stride = float(MAX_STRIDE) if not math.isfinite(raw) else round(max(1.0, min(MAX_STRIDE, raw)), 3)
        instances = max(1, min(self.config.inference.max_instances,
                               math.ceil(share / self.inference_profile.full_share - 1e-6)))
        if stride != cam.stride:
            cam.stride = stride
            self._publish_directive(name, stride)
        gpus = None
        if self.gpu and device is not None:  # pin the camera's Triton instances to the plan's device
            devices = self.config.resources.device_indices
            gpus = (devices[device] if device < len(devices) else devices[0],)
        if instances != cam.instances or gpus is not None:
            try:
                self.serving.set_instances(name, instances, gpus)
                cam.instances = instances
            except Exception as exc:  # serving goes on with the old count
                log.error("%s: could not set %d instances: %s", name, instances, exc)

    def _start_job(self, name: str, config_name: str, share: float, device_index: int | None) -> None:
        context = self.window
        assert context is not None
        cam = self._state.cameras[name]
        train, test = context.data[name]
        option = context.options.get(name, {}).get(config_name)
        config = self.configs.get(config_name) or RetrainConfig.from_name(config_name)
        job_id = f"{name}-w{context.window}-{config_name}-{int(time.time() * 1000) % 10**8}"
        device = "cpu"
        if self.gpu:
            from controller.gpu import GpuMemoryError, choose_training_device

            devices = self.config.resources.device_indices
            planned = devices[device_index] if device_index is not None and device_index < len(devices) else devices[0]
            try:
                physical = choose_training_device(planned, devices, TRAINER_MIN_FREE_MEMORY_MB * 2**20)
            except GpuMemoryError as exc:  # not started: the camera keeps serving its model this window
                context.started_jobs.add(name)
                self._state.trainer_failures += 1
                self.metrics.record_trainer_failure(name, "oom")
                window_record = self._state.record_for(context.window)
                if window_record is not None:
                    window_record.cameras.setdefault(name, {})["decision"] = f"trainer not started: {exc}"
                log.error("%s: trainer for %s not started: %s", name, config_name, exc)
                return
            if physical != planned:
                log.warning("%s: GPU %d has too little free memory for a trainer; it starts on GPU %d",
                            name, planned, physical)
            device = f"cuda:{physical}"
        record = self.pool.launch(job_id=job_id, camera=name, window=context.window, config=config,
                                  base_checkpoint=Path(cam.serving_checkpoint), data=train, validation=test,
                                  share=share, device=device,
                                  predicted_accuracy=option.end_accuracy if option else None,
                                  predicted_seconds=option.gpu_seconds / context.cost_scale if option else None,
                                  cost_scale=context.cost_scale)
        self._state.jobs[job_id] = record
        context.started_jobs.add(name)
        self.metrics.set_retraining_config(name, config_name, config.model_dump())

    # ---------------------------------------------------------------- finished trainers
    def _end_window_jobs(self) -> None:
        if self.pool is None:
            return
        for item in self.pool.stop_all(timeout_s=15.0):
            self._on_finished(item)

    def _on_finished(self, item: Finished) -> None:
        state = self._state
        record, result = item.record, item.result
        state.jobs.pop(record.job_id, None)
        name = record.camera
        cam = state.cameras[name]
        if self.window is not None:
            self.window.finished.add(name)
        window_record = state.record_for(record.window)
        entry = window_record.cameras.setdefault(name, {}) if window_record else {}
        entry.update({"job": record.job_id, "job_status": result.status, "retrained_accuracy": result.best_val_accuracy,
                      "train_seconds": round(result.seconds, 1), "epochs_done": result.epochs_done,
                      "job_share": round(record.share, 4), "img_per_s": result.img_per_s,
                      "startup_seconds": item.startup_seconds})
        if record.predicted_seconds and result.status == "ok":
            # The planner's wall time for the job at its share (its throughput curve), against the worker's own.
            entry["planned_train_seconds"] = round(throughput_time(record.predicted_seconds * record.cost_scale,
                                                                   record.share, self.throughput), 2)
            entry["cost_scale"] = round(record.cost_scale, 3)
        if result.status == "stopped" and not result.checkpoint:
            entry["decision"] = "stopped at the window's end before its first epoch: nothing to publish"
            log.info("%s: trainer %s stopped before producing a model", name, record.job_id)
            return
        if result.status == "failed" or not result.checkpoint:
            state.trainer_failures += 1
            self.metrics.record_trainer_failure(name, _failure_reason(result.exit_code))
            entry["decision"] = f"trainer failed: {result.message}"
            log.error("%s: trainer %s failed: %s", name, record.job_id, result.message)
            return
        if record.predicted_accuracy is not None and result.best_val_accuracy is not None and result.status == "ok":
            # (a job stopped at the window's end ran part of its epochs: not an outcome of its prediction)
            self.ledger.record(Outcome(name, record.window, record.config, record.predicted_accuracy,
                                       result.best_val_accuracy, record.predicted_seconds or 0.0,
                                       result.seconds * self.throughput(record.share)))  # whole-device seconds
            self.metrics.observe_profile(name, record.predicted_accuracy, result.best_val_accuracy)
        new_accuracy = result.best_val_accuracy or 0.0
        old_accuracy = cam.serving_accuracy if cam.serving_accuracy is not None else -1.0
        if new_accuracy <= old_accuracy:
            entry["decision"] = f"kept serving model ({new_accuracy:.3f} <= {old_accuracy:.3f} on held-out data)"
            log.info("%s: retrained model %.3f does not beat serving %.3f; not published", name, new_accuracy,
                     old_accuracy)
            return
        version = self._serve(name, Path(result.checkpoint), new_accuracy, record.window - 1, entry)
        if version is None:
            return
        entry["decision"] = f"published v{version} ({new_accuracy:.3f} > {old_accuracy:.3f})"
        latency = min(max(time.time() - record.started_at - result.seconds, 0.0), state.window_seconds)
        previous = state.job_latency_seconds
        state.job_latency_seconds = latency if previous is None else 0.5 * previous + 0.5 * latency

    def _serve_trials(self) -> None:
        """Serve the micro-profiler's best trial model where it beats the serving model on the window's
        held-out data, biggest gain first: a drifted camera gets a better model seconds after the plan,
        while its full retraining (already started) runs; that job's model replaces it only if better."""
        context = self.window
        if context is None:
            return
        state = self._state
        gains = {name: acc - (state.cameras[name].serving_accuracy or 0.0) for name, (_, acc, _) in context.trials.items()}
        record = state.record_for(context.window)
        for name in sorted(gains, key=gains.get, reverse=True):
            model, accuracy, kind = context.trials.pop(name)
            entry = record.cameras.setdefault(name, {}) if record else {}
            self._serve_trial(name, model, accuracy, state.cameras[name].serving_accuracy or 0.0,
                              context.window - 1, entry, kind=kind)

    def _serve_trial(self, name: str, model, accuracy: float, old: float, data_window: int, entry: dict,
                     prefix: str = "", kind: str | None = None) -> int | None:
        from trainer.models import save_model

        with tempfile.TemporaryDirectory(dir=self.layout.root) as tmp:
            checkpoint = save_model(model, Path(tmp) / "trial.pt", camera=name, trial=True)
            version = self._serve(name, checkpoint, accuracy, data_window, entry, prefix=f"{prefix}trial_")
        if version is not None:
            entry[f"{prefix}trial_accuracy"] = accuracy
            entry[f"{prefix}trial_serving_accuracy"] = old
            entry[f"{prefix}trial_kind"] = kind
            entry[f"{prefix}trial_decision"] = (f"served the profiler's trial model v{version} "
                                                f"({accuracy:.3f} > {old:.3f}, trained as {kind})")
            log.info("%s: serving the profiler's trial model v%d (%.3f > %.3f, trained as %s)", name, version,
                     accuracy, old, kind)
        return version

    def _serve(self, name: str, checkpoint: Path, accuracy: float, data_window: int, entry: dict,
               prefix: str = "") -> int | None:
        """Publish a checkpoint as the camera's serving model (accuracy: on the held-out data of
        data_window). Returns its version, or None when publishing failed and the old model still serves."""
        state = self._state
        cam = state.cameras[name]
        started = time.monotonic()
        try:
            version = self._publish_checkpoint(name, checkpoint)
        except (PublishError, Exception) as exc:  # any failure keeps the old model serving
            state.failed_swaps += 1
            self.metrics.record_swap(name, ok=False)
            entry[f"{prefix}decision"] = f"publish failed: {exc}"
            log.error("%s: publishing failed: %s", name, exc)
            return None
        state.swaps += 1
        self.metrics.record_swap(name, ok=True)
        cam.serving_accuracy = accuracy
        # the new model on held-out data of the window it learned from: with its accuracy on the next
        # window's data (measured when that window closes) it gives the drift forecast a fresh estimate
        cam.record_accuracy(data_window, version, accuracy)
        entry[f"{prefix}published_version"] = version
        entry[f"{prefix}publish_seconds"] = round(time.monotonic() - started, 2)  # export, check, Triton load
        entry[f"{prefix}published_at_s"] = round(time.time() - (self.window.started if self.window else time.time()), 1)
        self._observe(name)
        return version

    def _publish_checkpoint(self, name: str, checkpoint: Path) -> int:
        from trainer.export import export_onnx
        from trainer.models import load_model

        cam = self._state.cameras[name]
        model = load_model(checkpoint)
        with tempfile.TemporaryDirectory(dir=self.layout.root) as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            export_onnx(model, onnx_path, self.config.edge_model.input_size)
            published = self.serving.publish(name, onnx_path)
        target = self.layout.checkpoint(name, published.version)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint, target)
        cam.serving_version = published.version
        cam.serving_checkpoint = str(target)
        return published.version

    # ================================================================ Triton and models
    def _start_gpu_support(self) -> None:
        if not self.gpu or not self.config.resources.mps:
            return
        from controller.gpu import MpsDaemon, MpsError

        try:
            self.mps = MpsDaemon(self.config.mps_dir)
            self.mps.start()
        except MpsError as exc:
            log.warning("MPS unavailable (%s); trainers share the GPU by time-slicing", exc)
            self.mps = None

    def _ensure_triton(self) -> None:
        triton = self.config.triton
        repository = ModelRepository(self.config.model_repository)
        if triton.mode == "external":
            admin_key = triton.read_admin_key()
            url = triton.url
        else:
            admin_key = new_admin_key_file(self.layout.triton_dir / "admin-key")
            info_file = self.layout.triton_dir / "server.json"
            self.server = TritonServer.attach(info_file, admin_key)
            if self.server is not None:
                log.info("reattached to the embedded Triton (pid %d)", self.server.info.pid)
            else:
                names = [m for m in repository.models() if repository.versions(m)]
                self.server = TritonServer(repository.root, self.layout.triton_dir, admin_key=admin_key,
                                           address=triton.address, grpc_port=triton.grpc_port or 0,
                                           http_port=triton.http_port or 0, metrics_port=triton.metrics_port or 0,
                                           load_models=names)
                self.server.start()
                self.server.save_info(info_file)
            url = self.server.info.grpc_url
        self.triton_url = url
        self.client = TritonClient(url, admin_key=admin_key, timeout_s=triton.admin_call_timeout_s)
        self.serving = ServingManager(repository, self.client, load_timeout_s=triton.admin_call_timeout_s)

    def _model_spec(self, name: str) -> ModelSpec:
        size = self.config.edge_model.input_size
        gpu_devices = tuple(self.config.resources.device_indices) if self.gpu else ()
        return ModelSpec(name=name, input_dims=(3, size, size), max_batch_size=self.config.inference.max_batch_size,
                         max_queue_delay_us=self.config.inference.max_queue_delay_us,
                         instance_kind="KIND_GPU" if self.gpu else "KIND_CPU", gpus=gpu_devices[:1],
                         backend=self.config.triton.resolved_backend)

    def _ensure_models(self) -> None:
        """Serve every camera's model (bootstrapping the initial ones if needed) and the golden model."""
        from trainer.export import export_onnx
        from trainer.models import load_model

        state = self._state
        repository = self.serving.repository
        missing = [n for n in self.config.camera_names if not repository.versions(n) or not
                   state.cameras[n].serving_checkpoint]
        need_golden = not repository.versions(GOLDEN_MODEL)
        if missing or need_golden:
            boot = self.bootstrap()
            with tempfile.TemporaryDirectory(dir=self.layout.root) as tmp:
                if need_golden:
                    golden = load_model(boot.golden_model)
                    path = Path(tmp) / "golden.onnx"
                    export_onnx(golden, path, self.config.edge_model.input_size)
                    self.serving.deploy(self._model_spec(GOLDEN_MODEL), path)
                for name in missing:
                    source = boot.edge_models[name]
                    path = Path(tmp) / f"{name}.onnx"
                    export_onnx(load_model(source), path, self.config.edge_model.input_size)
                    published = self.serving.deploy(self._model_spec(name), path)
                    target = self.layout.checkpoint(name, published.version)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
                    state.cameras[name] = CameraRecord(serving_version=published.version,
                                                       serving_checkpoint=str(target))
        for name in [*self.config.camera_names, GOLDEN_MODEL]:
            if not self.client.model_ready(name):
                self.client.load(name)
        for name in self.config.camera_names:
            state.cameras[name].instances = repository.read_spec(name).instance_count

    def bootstrap(self):
        from controller.bootstrap_settings import bootstrap_for

        return bootstrap_for(self.config, progress=self.bootstrap_progress, cache_dir=self.models_cache)

    # ================================================================ helpers
    @property
    def _state(self) -> ControllerState:
        assert self.state is not None, "start() first"
        return self.state

    def _publish_directive(self, name: str, stride: float) -> None:
        state = self._state
        write_directive(self.layout.directive_file(name), CameraDirective(
            t0=state.t0, window_seconds=state.window_seconds, stride=stride, window=max(0, state.window),
            stop_after_window=None if self.camera_windows is None else self.camera_windows - 1))

    def _observe(self, name: str) -> None:
        cam = self._state.cameras[name]
        self.metrics.observe_camera(name, live_accuracy=cam.serving_accuracy, retrained_accuracy=None,
                                    serving_version=cam.serving_version, inference_share=cam.inference_share,
                                    training_share=cam.training_share, instances=cam.instances,
                                    frame_stride=cam.stride)

    def _save(self) -> None:
        state = self._state
        state.pruning = {"pruners": {n: p.to_dict() for n, p in self.pruners.items()},
                         "ledger": self.ledger.to_dict()}
        state.save(self.layout.state_file)


def _read_json(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _failure_reason(exit_code: int) -> str:
    from trainer import jobs

    return {jobs.EXIT_OOM: "oom", jobs.EXIT_BAD_DATA: "invalid_output", jobs.EXIT_BAD_MODEL: "invalid_output",
            jobs.EXIT_BAD_JOB: "crash", jobs.EXIT_DEVICE: "crash", -9: "killed"}.get(exit_code, "crash")
