"""A running deployment: Triton (embedded, or an external one), the trainer pool, GPU support, the
serving and initial models, and the reconcile core wired to them. `controller.service` drives it."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from controller.config import DeploymentConfig, GpuResources
from controller.labelling import GOLDEN_MODEL, GoldenInput
from controller.layout import DataLayout
from controller.metrics import ControllerMetrics
from controller.planner import InferenceProfile
from controller.planner.schedulers import scheduler as scheduler_named
from controller.profiles_io import deployment_throughput
from controller.reconcile.events import EventLog
from controller.reconcile.ports import SystemClock
from controller.reconcile.publish import Publisher
from controller.reconcile.scope import Scope
from controller.reconcile.step import Reconciler
from controller.retention import Retention, rules_for
from controller.runtime.cameras import DirectiveChannel
from controller.runtime.devices import TrainingDevices
from controller.runtime.evaluating import TorchEvaluator
from controller.runtime.exporting import OnnxExporter
from controller.runtime.lock import DataDirLock
from controller.runtime.profiling import TorchProfiler
from controller.runtime.serving import TritonServing
from controller.runtime.supervision import EmbeddedTriton, TritonSupervisor
from controller.state import CameraRecord, ControllerState
from controller.trainers import TrainerPool, kill_orphans
from controller.triton.client import TritonClient
from controller.triton.metrics_reader import TritonFigures
from controller.triton.repository import ModelRepository
from controller.triton.server import TritonPorts, TritonServer, new_admin_key_file
from controller.triton.serving import ServingManager
from controller.triton.spec import ModelSpec
from controller.user_models import UserModels, check_user_models, file_digest
from protocol.spool import SPOOL_CHUNK_SECONDS
from sources.detection.config import detector_model_name

log = logging.getLogger("controller")


class Deployment:
    def __init__(self, config: DeploymentConfig, *, scheduler: str | None = None, max_windows: int | None = None,
                 metrics: ControllerMetrics | None = None, bootstrap_progress: bool = True,
                 models_cache: Path | None = None, camera_windows: int | None = None) -> None:
        self.config = config
        self.scheduler = scheduler_named(scheduler or config.scheduler.name)
        self.max_windows = max_windows
        self.layout = DataLayout(Path(config.data.dir))
        self.gpu = isinstance(config.resources, GpuResources)
        self.cores = (os.cpu_count() or 1) if self.gpu else config.resources.cores
        self.metrics = metrics or ControllerMetrics()
        self.bootstrap_progress = bootstrap_progress
        self.models_cache = models_cache
        self.camera_windows = camera_windows
        self.devices = TrainingDevices(config)
        self.lock = DataDirLock(self.layout.root)
        self.state: ControllerState | None = None
        self.server: TritonServer | None = None
        self.client: TritonClient | None = None
        self.serving: TritonServing | None = None
        self.supervisor: TritonSupervisor | None = None  # watches Triton; restarts an embedded one
        self.pool: TrainerPool | None = None
        self.reconciler: Reconciler | None = None
        self.metrics_url: str | None = None
        self.directives_url: str | None = None  # the directive endpoint, when the service serves it
        self.triton_figures: TritonFigures | None = None  # per-camera figures from Triton's metrics
        for name in config.camera_names:
            self.metrics.add_camera(name)
        self.camera_channel = DirectiveChannel(serving_version=self.served_version)
        self.user_models = UserModels(golden=None, edge_checkpoint=None)  # checked at start()

    def start(self) -> Reconciler:
        """Raises DeploymentLocked, having touched nothing, where another controller runs the deployment."""
        config = self.config
        self.lock.acquire()
        # the user's model files first: one that does not fit stops the start before anything is served
        self.user_models = check_user_models(config, self.models_cache)
        import torch

        torch.set_num_threads(1)  # the controller's own torch work (profiling, export) stays off the trainers' cores
        state = ControllerState.load(self.layout.state_file, rebuild=self.rebuild_state) or ControllerState(
            t0=time.time() + 1.0, window_seconds=config.window_seconds,
            cameras={name: CameraRecord() for name in config.camera_names})
        self.state = state
        self.devices.start()
        self.pool = TrainerPool(self.layout.jobs_dir, cores=self.cores, gpu_env=self.devices.worker_env())
        throughput = deployment_throughput(config.resources, self.cores)
        self.serving = self._start_triton()
        metrics_url = config.triton_metrics_url
        if metrics_url is None:
            log.warning("no triton.metrics_url: per-camera request, shed and latency figures are not exported")
        else:
            self.triton_figures = TritonFigures(metrics_url, config.camera_names, self.metrics)
        events = EventLog(state, self.metrics)
        clock = SystemClock()
        publisher = Publisher(self.serving, OnnxExporter(config.edge_model.input_size), self.layout, state, events,
                              clock, save=lambda: state.save(self.layout.state_file))
        mp = config.microprofiler
        profiler = TorchProfiler(self.layout.root / "trials", subsample=mp.subsample, epochs=mp.epochs,
                                 profile_share=1.0 if self.gpu else 1.0 / self.cores, throughput=throughput,
                                 device="cuda:0" if self.gpu else "cpu")
        scope = Scope(config=config, layout=self.layout, state=state, scheduler=self.scheduler,
                      serving=self.serving, trainers=self.pool, profiler=profiler,
                      cameras=self.camera_channel, choose_device=self.devices.choose, clock=clock,
                      metrics=self.metrics, events=events, publisher=publisher,
                      inference=self._inference_profile(), throughput=throughput, cores=self.cores,
                      camera_windows=self.camera_windows, evaluate=TorchEvaluator("cuda:0" if self.gpu else "cpu"),
                      retention=Retention(self.layout, self.serving.manager.repository, rules_for(config),
                                          self.metrics))
        self.reconciler = Reconciler(scope, max_windows=self.max_windows)
        # Triton's index first (it may serve what the state lost), then the jobs that ended while no controller
        # ran (their models publish on top of what is served), then the models that are missing
        self.reconciler.truth.repair()
        self.reconciler.recover(kill_orphans)
        self._ensure_models(publisher)
        self.reconciler.begin()
        return self.reconciler

    def served_version(self, camera: str) -> int | None:
        """The version the state records as served for the camera (None: none yet); read from any thread."""
        state = self.state
        record = state.cameras.get(camera) if state is not None else None
        return (record.serving_version or None) if record is not None else None

    def rebuild_state(self) -> ControllerState | None:
        """For when the state file and its last good copy are both unusable: both are moved aside (kept for
        the operator, named in the log) and a fresh state is returned, which the first look at Triton's
        repository index fills with the versions it serves and their kept checkpoints (ServingTruth)."""
        from controller.state import previous_copy

        stamp = time.strftime("%Y%m%dT%H%M%S")
        moved = []
        for path in (self.layout.state_file, previous_copy(self.layout.state_file)):
            if path.exists():
                aside = path.with_name(f"{path.name}.bad-{stamp}")
                os.replace(path, aside)
                moved.append(str(aside))
        log.error("state files unusable, moved aside (%s): starting from a fresh state that Triton's repository "
                  "index and the kept checkpoints fill in (the window clock restarts at window 0)", ", ".join(moved))
        return ControllerState(t0=time.time() + 1.0, window_seconds=self.config.window_seconds,
                               cameras={name: CameraRecord() for name in self.config.camera_names})

    def shutdown(self, stop_triton: bool = True) -> None:
        if not self.lock.held:
            return  # never started (another controller holds the deployment): nothing of ours to stop
        if self.reconciler is not None:
            self.reconciler.shutdown()
        if self.pool is not None:
            self.pool.close()
        if self.client is not None:
            self.client.close()
        if stop_triton and self.server is not None:
            self.server.stop()
        self.devices.stop()
        self.lock.release()

    # ------------------------------------------------------------------ Triton and models
    def _inference_profile(self) -> InferenceProfile:
        from controller.inference_profile import measured_profile

        return measured_profile(self.config)

    def _start_triton(self) -> TritonServing:
        triton = self.config.triton
        repository = ModelRepository(self.config.model_repository, keep_versions=self.config.data.keep_versions)
        repository.clean_staging()  # this controller holds the deployment's lock: no publish of another is in flight
        if triton.mode == "external":
            admin_key = triton.read_admin_key()
            url = triton.url
        else:
            admin_key = new_admin_key_file(self.layout.triton_dir / "admin-key")
            embedded = EmbeddedTriton(repository, self.layout.triton_dir, admin_key, triton.address,
                                      TritonPorts(triton.grpc_port, triton.http_port, triton.metrics_port),
                                      self.layout.triton_dir / "server.json",
                                      bind_address=self.config.triton_bind_address)
            self.server = TritonServer.attach(embedded.info_file, admin_key)
            if self.server is not None and self.server.bind_address != self.config.triton_bind_address:
                log.info("the running embedded Triton listens on %s, the config says %s (network.expose): "
                         "restarting it", self.server.bind_address, self.config.triton_bind_address)
                self.server.stop()
                self.server = None
            if self.server is not None:
                log.info("reattached to the embedded Triton (pid %d)", self.server.info.pid)
            else:  # none yet, or the one server.json names is dead: a new one on the configured ports
                self.server = embedded.start()
            url = self.server.info.grpc_url
        self.client = TritonClient(url, admin_key=admin_key, timeout_s=triton.admin_call_timeout_s)
        manager = ServingManager(repository, self.client, load_timeout_s=triton.admin_call_timeout_s)
        serving = TritonServing(manager, self.client, self.config.inference.label_requests_in_flight,
                                golden=self.golden_input())
        if self.server is not None:
            self.supervisor = TritonSupervisor(self.metrics, server=self.server, embedded=embedded,
                                               after_restart=lambda server: self._restarted(server, serving))
        else:
            self.supervisor = TritonSupervisor(self.metrics, probe=self.client.server_ready)
        return serving

    def _restarted(self, server: TritonServer, serving: TritonServing) -> None:
        self.server = server  # the one shutdown stops
        serving.reload_after_restart()

    def golden_input(self) -> GoldenInput | None:
        """What a user golden model is sent and how its classes map (None: the bootstrapped one)."""
        g, found = self.config.golden_model, self.user_models.golden
        if g.onnx is None or found is None:
            return None
        return GoldenInput(g.input_size, g.mean, g.std, g.input_layout, tuple(g.deployment_map(self.config.classes)),
                           found.input_name, found.output_name)

    def model_spec(self, name: str) -> ModelSpec:
        config = self.config
        size = config.edge_model.input_size
        gpu_devices = tuple(config.resources.device_indices) if self.gpu else ()
        # a camera's model sheds what its queue cannot hold; the golden model serves only the controller
        camera = name != GOLDEN_MODEL
        tensors: dict = {"input_dims": (3, size, size), "output_dims": (len(config.classes),)}
        user_golden = self.user_models.golden
        if not camera and user_golden is not None:  # served as given: its own tensor names and shapes
            g = config.golden_model
            tensors = {"input_name": user_golden.input_name, "output_name": user_golden.output_name,
                       "output_dims": (user_golden.classes,),
                       "input_dims": (3, g.input_size, g.input_size) if g.input_layout == "nchw"
                       else (g.input_size, g.input_size, 3)}
        return ModelSpec(name=name, **tensors, max_batch_size=config.inference.max_batch_size,
                         max_queue_delay_us=config.inference.max_queue_delay_us,
                         max_queue_size=config.inference.max_queue_size if camera else 0,
                         queue_timeout_us=config.inference.queue_timeout_ms * 1000 if camera else 0,
                         instance_kind="KIND_GPU" if self.gpu else "KIND_CPU", gpus=gpu_devices[:1],
                         backend=config.triton.resolved_backend, **self.capture_settings(name))

    def config_owned_fields(self, name: str) -> dict:
        """The spec fields that follow the config (capture, the bounded queue): a spec written by an
        earlier config, or an earlier version, is brought up to date at start-up."""
        spec = self.model_spec(name)
        return {"max_queue_size": spec.max_queue_size, "queue_timeout_us": spec.queue_timeout_us,
                **self.capture_settings(name)}

    def capture_settings(self, name: str) -> dict:
        """A camera model's capture fields (ModelSpec): its sample of the requests goes to the controller
        (the golden model captures nothing)."""
        config = self.config
        if name not in config.camera_names:
            return {}
        # a chunk every few seconds; in short windows more often, so that few crops reach the controller
        # after their window closed (they are dropped then)
        chunk_seconds = max(0.5, min(SPOOL_CHUNK_SECONDS, config.window_seconds / 10))
        return {"capture_dir": config.capture_dir_for_triton, "capture_via": config.triton.capture_via,
                "capture_rate": config.sampling_rate(name),
                "capture_budget_bytes": config.capture_budget_bytes, "capture_chunk_seconds": chunk_seconds}

    def _ensure_models(self, publisher: Publisher) -> None:
        """Serve every camera's model (bootstrapping the initial ones if needed) and the golden model,
        through the same publish path as every later model."""
        state = self.state
        serving = self.serving
        assert state is not None and serving is not None
        missing = [n for n in self.config.camera_names
                   if not serving.has_versions(n) or not state.cameras[n].serving_checkpoint]
        need_golden = not self._golden_current()
        user = self.user_models
        edge_models: dict[str, Path] = dict.fromkeys(missing, user.edge_checkpoint) if user.edge_checkpoint else {}
        golden_file = Path(self.config.golden_model.onnx) if self.config.golden_model.onnx else None
        if (missing and not edge_models) or (need_golden and golden_file is None):
            # (what the config gives as files is never trained; the rest as one cached bootstrap)
            boot = self.bootstrap(edge=user.edge_checkpoint is None, golden=golden_file is None)
            edge_models = edge_models or {n: Path(boot.edge_models[n]) for n in missing}
        if need_golden:
            serving.ensure_model(self.model_spec(GOLDEN_MODEL))
            if golden_file is not None:  # served as given
                with serving.changes:
                    serving.manager.publish(GOLDEN_MODEL, golden_file)
                log.info("golden model: serving %s", golden_file)
            else:
                publisher.install(GOLDEN_MODEL, Path(boot.golden_model))
        for name in missing:
            serving.ensure_model(self.model_spec(name))
            state.cameras[name] = CameraRecord()
            publisher.serve(name, edge_models[name])
        changed = [name for name in self.config.camera_names if name not in missing
                   and serving.ensure_spec_fields(name, self.config_owned_fields(name))]
        detectors = self._ensure_detectors()
        serving.ensure_loaded([*self.config.camera_names, GOLDEN_MODEL, *detectors], reload=changed)
        for name in self.config.camera_names:
            state.cameras[name].instances = serving.instance_count(name)

    def detector_spec(self, camera: str) -> ModelSpec:
        """A camera's ONNX detector as Triton serves it: as given (its tensors, one frame a call, no
        batching by Triton, no capture), on the camera models' backend and device."""
        found = self.user_models.detectors[camera]
        gpu_devices = tuple(self.config.resources.device_indices) if self.gpu else ()
        return ModelSpec(name=detector_model_name(camera), input_name=found.input_name, input_dims=found.input_dims,
                         output_name=found.output_name, output_dims=found.output_dims, max_batch_size=0,
                         dynamic_batching=False, instance_kind="KIND_GPU" if self.gpu else "KIND_CPU",
                         gpus=gpu_devices[:1], backend=self.config.triton.resolved_backend)

    def _ensure_detectors(self) -> list[str]:
        """Serve each camera's ONNX detector (`<camera>.detector`), published again when its file or its
        spec changed; the Triton models to load."""
        serving = self.serving
        assert serving is not None
        repository = serving.manager.repository
        names = []
        for camera, found in self.user_models.detectors.items():
            spec = self.detector_spec(camera)
            names.append(spec.name)
            if serving.has_versions(spec.name) and repository.read_spec(spec.name) == spec \
                    and self._serves_file(spec.name, found.path):
                continue
            serving.ensure_model(spec)
            with serving.changes:
                serving.manager.publish(spec.name, found.path)
            log.info("%s: serving the detector %s as %s", camera, found.path, spec.name)
        return names

    def _golden_current(self) -> bool:
        """Whether the repository's golden model is the one the config asks for: served with the wanted
        tensors, and for a user's file, that file's bytes (a changed file or config replaces it)."""
        serving = self.serving
        assert serving is not None
        if not serving.has_versions(GOLDEN_MODEL):
            return False
        repository = serving.manager.repository
        wanted, spec = self.model_spec(GOLDEN_MODEL), repository.read_spec(GOLDEN_MODEL)
        fields = ("input_name", "input_dims", "output_name", "output_dims")
        if any(getattr(spec, f) != getattr(wanted, f) for f in fields):
            return False
        golden_file = self.config.golden_model.onnx
        if golden_file is None:
            return True
        return self._serves_file(GOLDEN_MODEL, Path(golden_file))

    def _serves_file(self, model: str, path: Path) -> bool:
        """Whether the model's newest version in the repository is the bytes of `path`."""
        assert self.serving is not None
        repository = self.serving.manager.repository
        served = repository.model_dir(model) / str(repository.latest_version(model)) / "model.onnx"
        return file_digest(served) == file_digest(path)

    def bootstrap(self, *, edge: bool = True, golden: bool = True):
        from controller.bootstrap_settings import bootstrap_for

        return bootstrap_for(self.config, progress=self.bootstrap_progress, cache_dir=self.models_cache,
                             edge=edge, golden=golden)
