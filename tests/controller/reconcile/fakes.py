"""In-memory fakes of the reconcile core's ports, and a Scope built on them, for fast unit tests of the
reconcile step (no Triton, no trainer processes, no torch)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from controller.config import parse_config
from controller.layout import DataLayout
from controller.metrics import ControllerMetrics
from controller.planner import InferenceProfile, RetrainOption, ThroughputCurve
from controller.planner.schedulers import scheduler
from controller.reconcile.events import EventLog
from controller.reconcile.ports import Finished, ProfiledOptions
from controller.reconcile.publish import Publisher
from controller.reconcile.scope import Scope
from controller.reconcile.step import Reconciler
from controller.state import CameraRecord, ControllerState, JobRecord
from protocol.spool import Spool
from trainer.jobs import JobResult
from trainer.streams.base import WindowData

WINDOW_S = 30.0


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def label_of(images: np.ndarray) -> np.ndarray:
    """The fakes' ground truth and golden label: written into each crop's first pixel."""
    return images[:, 0, 0, 0].astype(np.int64) % 6


@dataclass
class FakeServing:
    accuracy_of: dict[tuple[str, int], float] = field(default_factory=dict)  # (model, version) -> accuracy
    versions: dict[str, int] = field(default_factory=dict)
    published: list[tuple[str, int]] = field(default_factory=list)
    instances: dict[str, int] = field(default_factory=dict)
    fail_publish: set[str] = field(default_factory=set)
    labelled: int = 0
    on_disk: dict[str, list[int]] = field(default_factory=dict)  # the repository's versions
    retired: list[tuple[str, int, str]] = field(default_factory=list)
    down: bool = False  # the server cannot be asked

    def golden_labels(self, images: np.ndarray) -> np.ndarray:
        if self.down:
            raise ConnectionError("Triton is not answering")
        self.labelled += len(images)
        return label_of(images)

    def accuracy(self, model: str, images: np.ndarray, labels: np.ndarray) -> float | None:
        return self.accuracy_of.get((model, self.versions.get(model, 1)), 0.5)

    def publish(self, model: str, onnx_path: Path) -> int:
        assert Path(onnx_path).read_bytes() == b"onnx", "published something the exporter did not write"
        if model in self.fail_publish:
            raise RuntimeError(f"{model}: load failed")
        version = max([self.versions.get(model, 0), *self.on_disk.get(model, [])]) + 1
        self.versions[model] = version
        self.on_disk.setdefault(model, []).append(version)
        self.published.append((model, version))
        return version

    def served_versions(self, models: list[str]) -> dict[str, int | None]:
        if self.down:
            raise ConnectionError("Triton is not answering")
        return {name: self.versions.get(name) for name in models}

    def repository_versions(self, model: str) -> list[int]:
        return sorted(self.on_disk.get(model, []))

    def retire_version(self, model: str, version: int, reason: str) -> None:
        self.retired.append((model, version, reason))
        remaining = [v for v in self.on_disk.get(model, []) if v != version]
        self.on_disk[model] = remaining
        if self.versions.get(model) == version:
            self.versions[model] = max(remaining, default=0)

    def set_instances(self, model: str, count: int, gpus: tuple[int, ...] | None) -> None:
        self.instances[model] = count


def fake_export(checkpoint: Path, onnx_path: Path) -> None:
    assert Path(checkpoint).is_file(), checkpoint
    Path(onnx_path).write_bytes(b"onnx")


class FakeTrainers:
    """Jobs run until a test finishes them (or the window's end stops them)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.records: dict[str, JobRecord] = {}
        self.ended: list[Finished] = []
        self.shares: dict[str, float] = {}
        self.stopped_accuracy: dict[str, float | None] = {}  # camera -> best accuracy when stopped
        self.launched: list[JobRecord] = []
        self.killed: list[str] = []

    def launch(self, *, job_id, camera, window, config, base_checkpoint, data, validation, share, device="cpu",
               predicted_accuracy=None, predicted_seconds=None, cost_scale=1.0, cost_overhead=0.0) -> JobRecord:
        assert Path(data).is_file() and Path(base_checkpoint).is_file()
        record = JobRecord(job_id=job_id, camera=camera, config=config.name, window=window, pid=None,
                           job_dir=str(self.root / job_id), share=share, device=device, started_at=time.time(),
                           predicted_accuracy=predicted_accuracy, predicted_seconds=predicted_seconds,
                           cost_scale=cost_scale, cost_overhead=cost_overhead)
        self.records[job_id] = record
        self.launched.append(record)
        return record

    def job_of(self, camera: str) -> JobRecord:
        return next(r for r in self.records.values() if r.camera == camera)

    def finish(self, camera: str, accuracy: float | None, status: str = "ok") -> None:
        record = self.records.pop(self.job_of(camera).job_id)
        self.ended.append(self._finished(record, accuracy, status))

    def _finished(self, record: JobRecord, accuracy: float | None, status: str) -> Finished:
        checkpoint = None
        if accuracy is not None:
            checkpoint = self.root / f"{record.job_id}.pt"
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_bytes(b"weights")
        result = JobResult(job_id=record.job_id, status=status, best_val_accuracy=accuracy,
                           checkpoint=str(checkpoint) if checkpoint else None, epochs_done=2, seconds=3.0,
                           img_per_s=100.0, exit_code=0 if status != "failed" else 1, message="boom")
        return Finished(record, result, 0.4)

    def poll(self) -> list[Finished]:
        ended, self.ended = self.ended, []
        return ended

    def stop_all(self, timeout_s: float = 20.0) -> list[Finished]:
        stopped = [self._finished(r, self.stopped_accuracy.get(r.camera), "stopped") for r in self.records.values()]
        self.records.clear()
        return stopped

    def running(self) -> list[JobRecord]:
        return list(self.records.values())

    def progress(self, job_id: str) -> float:
        return 0.5

    def set_share(self, job_id: str, share: float) -> None:
        self.shares[job_id] = share
        self.records[job_id].share = share

    def kill_orphans(self, records: dict[str, JobRecord]) -> list[str]:
        self.killed.extend(records)
        return list(records)


class FakeProfiler:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.start_accuracy: dict[str, float] = {}
        self.trial_accuracy: dict[str, float] = {}
        self.calls: list[str] = []

    def profile(self, camera, checkpoint, train, test, configs, budget_seconds) -> ProfiledOptions:
        assert Path(checkpoint).is_file() and len(train) and len(test) and budget_seconds > 0
        self.calls.append(camera)
        start = self.start_accuracy.get(camera, 0.5)
        options = [RetrainOption(camera, c.name, min(1.0, start + 0.3 if c.layers == "all" else start + 0.1),
                                 4.0 if c.layers == "all" else 1.0) for c in configs]
        trial = self.trial_accuracy.get(camera)
        checkpoint_path = None
        if trial is not None:
            checkpoint_path = self.root / "trials" / f"{camera}.pt"
            checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            checkpoint_path.write_bytes(b"trial")
        return ProfiledOptions(start, options, checkpoint_path, trial, "head-h64" if trial is not None else None)


@dataclass
class FakeCameras:
    directives: dict[str, dict] = field(default_factory=dict)

    def publish(self, camera: str, **directive) -> None:
        self.directives[camera] = directive


CONFIG = {
    "cameras": [{"name": "cam0", "source": {"kind": "synthetic", "seed": 1}},
                {"name": "cam1", "source": {"kind": "synthetic", "seed": 2}}],
    "edge_model": {"input_size": 16},
    "window_seconds": WINDOW_S,
    "resources": {"mode": "cpu", "cores": 2},
    "retraining_configs": [{"layers": "all", "epochs": 2, "subsample": 1.0, "hidden": 64},
                           {"layers": "head", "epochs": 2, "subsample": 1.0, "hidden": 64}],
    "metrics": {"enabled": False},
}


@dataclass
class Harness:
    reconciler: Reconciler
    scope: Scope
    clock: FakeClock
    serving: FakeServing
    trainers: FakeTrainers
    profiler: FakeProfiler
    cameras: FakeCameras

    @property
    def state(self) -> ControllerState:
        return self.scope.state

    def spool(self, camera: str, window: int, crops: int = 40, chunk: int = 0) -> None:
        """The camera's sampled crops of `window` (a crop's first pixel carries its class)."""
        rng = np.random.default_rng([window, chunk, int(camera[-1])])
        images = rng.integers(0, 255, size=(crops, 4, 4, 3), dtype=np.uint8)
        labels = label_of(images)
        data = WindowData(images, labels, np.arange(crops), np.arange(crops), np.zeros(crops), camera=camera,
                          window=window)  # the spool keeps the labels aside as ground truth
        Spool(self.scope.layout, camera, 2**30).write_chunk(window, chunk, data)

    def enter_window(self, window: int) -> float:
        """Move the clock just past the start of `window` and run one step."""
        self.clock.now = self.state.t0 + window * WINDOW_S + 0.5
        return self.reconciler.reconcile()


def make_harness(root: Path, scheduler_name: str = "thief", *, state: ControllerState | None = None,
                 trainers: FakeTrainers | None = None, cameras: FakeCameras | None = None, **overrides) -> Harness:
    """`cameras`: the channel to the cameras (any CameraChannel; by default a FakeCameras)."""
    config = parse_config({**CONFIG, **overrides, "data": {"dir": str(root / "data")}}, base_dir=root,
                          source="test")
    layout = DataLayout(Path(config.data.dir))
    layout.root.mkdir(parents=True, exist_ok=True)
    clock = FakeClock()
    if state is None:
        state = ControllerState.load(layout.state_file) or ControllerState(
            t0=clock.now, window_seconds=WINDOW_S, cameras={n: CameraRecord() for n in config.camera_names})
    metrics = ControllerMetrics(gpu_telemetry=False)
    events = EventLog(state, metrics)
    serving = FakeServing()
    trainers = trainers or FakeTrainers(root / "jobs")
    profiler = FakeProfiler(root)
    cameras = cameras or FakeCameras()
    publisher = Publisher(serving, fake_export, layout, state, events, clock,
                          save=lambda: state.save(layout.state_file))
    scope = Scope(config=config, layout=layout, state=state, scheduler=scheduler(scheduler_name), serving=serving,
                  trainers=trainers, profiler=profiler, cameras=cameras, choose_device=lambda index: "cpu",
                  clock=clock, metrics=metrics, events=events, publisher=publisher,
                  inference=InferenceProfile(full_share=0.25), throughput=ThroughputCurve.linear(), cores=2)
    reconciler = Reconciler(scope)
    for name, cam in state.cameras.items():  # a restarted deployment's Triton serves what it recorded
        if cam.serving_version:
            serving.versions[name] = cam.serving_version
    reconciler.recover(trainers.kill_orphans)
    for name in config.camera_names:  # the initial models serve as version 1
        if not state.cameras[name].serving_checkpoint:
            checkpoint = root / "boot" / f"{name}.pt"
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_bytes(b"boot")
            publisher.serve(name, checkpoint)
        else:
            serving.versions[name] = state.cameras[name].serving_version
            serving.on_disk[name] = list(range(1, state.cameras[name].serving_version + 1))
    reconciler.begin()
    clock.now = state.t0
    return Harness(reconciler, scope, clock, serving, trainers, profiler, cameras)
