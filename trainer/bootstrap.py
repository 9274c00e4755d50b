"""Bootstrap: the initial edge model(s) from the cameras' history and the golden model from all
conditions, cached under a directory keyed by a hash of the settings and the camera specs.

As in the original (pretrained on two cities, then deployed everywhere), one edge model is trained on
the pooled historical windows of all cameras and every camera starts from it; `per_camera=True`
trains one per camera instead. The golden model (larger, trained on crops spread over every
camera's whole condition cycle) labels window data for retraining.

Default sizes (chosen so 4 cameras bootstrap in about 1-2 minutes on 2 CPU cores): edge ResNet18 at
64 px on 1 historical window per camera subsampled to 1,600 crops, 4 epochs; golden ResNet34 at 48 px
on 2,400 crops, 4 epochs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from common.atomic import atomic_write_json
from trainer.progress import ProgressReporter, ProgressTask
from trainer.streams.base import CLASSES, WindowData

if TYPE_CHECKING:
    from trainer.fit import EpochStats
from trainer.streams.synthetic import CameraStreamSpec

CACHE_VERSION = 3  # bump when training code changes what a cached model would be (3: cosine learning rate)
DEFAULT_CACHE_DIR = Path(".ekya/models")


class BootstrapSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    edge_family: str = "resnet18"
    edge_hidden: int = Field(64, ge=1)
    edge_input_size: int = Field(64, ge=16, le=512)
    history_windows: int = Field(1, ge=1, description="windows -k..-1 of every camera")
    edge_crops: int = Field(1600, ge=10, description="cap on the pooled historical crops")
    edge_epochs: int = Field(4, ge=1)
    edge_lr: float = Field(0.02, gt=0)
    per_camera: bool = False
    golden: bool = True
    golden_family: str = "resnet34"
    golden_hidden: int = Field(1024, ge=1)
    golden_input_size: int = Field(48, ge=16, le=512)
    golden_crops: int = Field(2400, ge=10)
    golden_epochs: int = Field(4, ge=1)
    golden_lr: float = Field(0.02, gt=0)
    batch_size: int = Field(32, ge=2)
    seed: int = 0
    classes: tuple[str, ...] = CLASSES  # the deployment's, in label order
    edge: bool = True  # False: the edge model comes from the user's file (only the golden model is trained)

    def cache_fields(self) -> dict[str, Any]:
        """The settings that key the cache: the later fields only where they differ from their defaults,
        so that caches made before them stay valid."""
        fields = self.model_dump()
        for name in ("classes", "edge"):
            if fields[name] == type(self).model_fields[name].default:
                del fields[name]
        return fields


@dataclass
class BootstrapResult:
    key: str
    directory: Path
    edge_models: dict[str, Path]  # camera -> checkpoint (the same file for all when shared)
    golden_model: Path | None
    accuracy: dict[str, float] = field(default_factory=dict)  # "edge:<camera>|shared", "golden" -> val acc
    reused: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "directory": str(self.directory),
                "edge_models": {k: str(v) for k, v in self.edge_models.items()},
                "golden_model": str(self.golden_model) if self.golden_model else None,
                "accuracy": self.accuracy, "reused": self.reused, "seconds": round(self.seconds, 2)}


def cache_key(cameras: list[CameraStreamSpec], settings: BootstrapSettings) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "settings": settings.cache_fields(),
                       "cameras": [c.model_dump() for c in cameras]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load_manifest(directory: Path) -> BootstrapResult | None:
    manifest = directory / "manifest.json"
    try:
        d = json.loads(manifest.read_text())
        edge = {k: directory / v for k, v in d["edge_models"].items()}
        golden = directory / d["golden_model"] if d.get("golden_model") else None
    except (OSError, ValueError, KeyError):
        return None
    if not all(p.is_file() for p in edge.values()) or (golden is not None and not golden.is_file()):
        return None
    return BootstrapResult(d["key"], directory, edge, golden, dict(d.get("accuracy", {})), reused=True)


def bootstrap(cameras: list[CameraStreamSpec], settings: BootstrapSettings | None = None,
              cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR, *, device: str = "cpu",
              progress: bool = True, force: bool = False) -> BootstrapResult:
    """Train (or reuse from the cache) the initial edge model(s) and the golden model.

    progress: report what is being made and how far it is (trainer.progress: bars on a terminal, log
    lines otherwise). The manifest is written last, so an interrupted bootstrap is never mistaken for a
    cached one.
    """
    if not cameras:
        raise ValueError("bootstrap needs at least one camera")
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise ValueError(f"camera names must be unique, got {names}")
    settings = settings or BootstrapSettings()
    key = cache_key(cameras, settings)
    directory = Path(cache_dir) / key
    t0 = time.perf_counter()
    if not force:
        cached = _load_manifest(directory)
        if cached is not None:
            cached.seconds = time.perf_counter() - t0
            return cached
    directory.mkdir(parents=True, exist_ok=True)
    with ProgressReporter("bootstrap", enabled=progress) as report:
        report.note(f"no cached models for these cameras and settings: training them in {directory}")
        edge, acc = _train_edges(cameras, settings, directory, device, report)
        golden = None
        if settings.golden:
            golden, acc["golden"] = _train_golden(cameras, settings, directory, device, report)
        report.note(f"done in {time.perf_counter() - t0:.0f} s: "
                    + ", ".join(f"{name} {value:.3f} held-out" for name, value in acc.items()))
    result = BootstrapResult(key, directory, edge, golden, acc, reused=False,
                             seconds=time.perf_counter() - t0)
    atomic_write_json(directory / "manifest.json", {
        "key": key, "settings": settings.model_dump(mode="json"), "cameras": [c.model_dump() for c in cameras],
        "edge_models": {k: v.name for k, v in edge.items()},
        "golden_model": golden.name if golden else None, "accuracy": acc,
        "seconds": round(result.seconds, 2)})
    return result


def _train_edges(cameras: list[CameraStreamSpec], s: BootstrapSettings, directory: Path, device: str,
                 report: ProgressReporter) -> tuple[dict[str, Path], dict[str, float]]:
    from trainer.streams.base import concat
    from trainer.streams.synthetic import generate_many

    windows = list(range(-s.history_windows, 0))
    groups = [(c.name, [c]) for c in cameras] if s.per_camera else [("shared", cameras)]
    paths: dict[str, Path] = {}
    acc: dict[str, float] = {}
    for tag, cams in groups:
        per_window = -(-s.edge_crops // (len(cams) * len(windows)))  # render only the crops trained on
        report.note(f"rendering history windows {windows} of {len(cams)} camera(s), {per_window} crops each, "
                    f"for the {tag} edge model")
        tasks = [(c, w, 0, per_window) for c in cams for w in windows]
        rendered = report.task("history windows", total=len(cams), unit="camera")
        data = concat(generate_many(tasks, on_done=_camera_steps(tasks, rendered)), camera=tag)
        data = data.subsample(min(1.0, s.edge_crops / len(data)), seed=s.seed)
        train, val = data.split(0.15, seed=s.seed)
        path, acc[f"edge:{tag}"] = _train_model(f"edge model ({tag})", s.edge_family, s.edge_hidden, s.edge_input_size,
                                        train, val, s.edge_epochs, s.edge_lr, s, directory / f"edge-{tag}.pt",
                                        device, report, {"role": "edge", "trained_on": f"windows {windows}"})
        for c in cams:
            paths[c.name] = path
    return paths, acc


def _camera_steps(tasks: list[Any], task: ProgressTask) -> Callable[[int], None]:
    """generate_many's on_done (the index of each window made, in order) as one step per camera: a
    camera is done with its last window."""
    last = {spec.name: i for i, (spec, *_) in enumerate(tasks)}

    def on_done(index: int) -> None:
        name = tasks[index][0].name
        if last[name] == index:
            task.advance(name)
    return on_done


def _train_golden(cameras: list[CameraStreamSpec], s: BootstrapSettings, directory: Path, device: str,
                  report: ProgressReporter) -> tuple[Path, float]:
    from trainer.streams.synthetic import all_conditions_data

    n_val = max(200, s.golden_crops // 6)
    report.note(f"rendering {s.golden_crops} training and {n_val} held-out crops for the golden model over "
                f"every camera's condition cycle")
    rendered = report.task("golden training crops", total=len(cameras), unit="camera")
    train = all_conditions_data(cameras, s.golden_crops, salt=1, on_camera=lambda spec: rendered.advance(spec.name))
    rendered = report.task("golden held-out crops", total=len(cameras), unit="camera")
    val = all_conditions_data(cameras, n_val, salt=2, on_camera=lambda spec: rendered.advance(spec.name))
    return _train_model("golden model", s.golden_family, s.golden_hidden, s.golden_input_size, train, val, s.golden_epochs,
                s.golden_lr, s, directory / "golden.pt", device, report, {"role": "golden"})


def _train_model(label: str, family: str, hidden: int, input_size: int, train: Any, val: Any, epochs: int, lr: float,
         s: BootstrapSettings, path: Path, device: str, report: ProgressReporter, extra: dict[str, Any]
         ) -> tuple[Path, float]:
    # Said before the imports: the first import of torch and torchvision takes seconds.
    report.note(f"training the {label}: {family} {input_size}px on {len(train)} crops ({len(val)} held out), "
                f"{epochs} epochs")
    from trainer.configs import RetrainConfig
    from trainer.fit import fit
    from trainer.models import build_model, save_model

    model = build_model(family, hidden, input_size, seed=s.seed, classes=s.classes)
    config = RetrainConfig(epochs=epochs, layers="all", hidden=hidden, lr=lr, batch_size=s.batch_size,
                           lr_schedule="cosine")
    task = report.task(label, total=epochs, unit="epoch")

    def on_epoch(stats: EpochStats) -> None:
        held_out = "" if stats.val_accuracy is None else f"{stats.val_accuracy:.3f} held-out, "
        task.advance(f"{held_out}loss {stats.loss:.3f}")

    result = fit(model, config, train, val, device=device, seed=s.seed, on_epoch=on_epoch)
    acc = float(result.best_val_accuracy or 0.0)
    save_model(model.cpu(), path, **extra, val_accuracy=acc, lr_schedule=config.lr_schedule)
    return path, acc


MIN_BOOTSTRAP_CROPS = 20  # fewer labelled crops cannot train a model and hold some out to measure it


class BootstrapDataError(ValueError):
    """Too little labelled data to bootstrap from; the message says how much there is and where."""


@dataclass(frozen=True)
class BootstrapData:
    """What a deployment's bootstrap trains on, made only when the cache does not have the models.

    `identity` (one JSON-able entry per camera) keys the cache like the synthetic specs do in `bootstrap`;
    `history()` is the pooled labelled history of every camera; `golden()` is the golden model's (train,
    held-out) crops, or None for a split of the history."""

    cameras: list[str]
    identity: list[dict[str, Any]]
    history: Callable[[], WindowData]
    golden: Callable[[], tuple[WindowData, WindowData]] | None = None
    trained_on: str = "history"


def bootstrap_from_data(data: BootstrapData, settings: BootstrapSettings | None = None,
                        cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR, *, device: str = "cpu",
                        progress: bool = True, force: bool = False) -> BootstrapResult:
    """`bootstrap` on any cameras' labelled history: one shared edge model, and the golden model."""
    settings = settings or BootstrapSettings()
    if settings.per_camera:
        raise ValueError("bootstrap_from_data trains one shared edge model (per_camera is not supported)")
    blob = json.dumps({"v": CACHE_VERSION, "settings": settings.cache_fields(), "cameras": data.identity},
                      sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]  # as cache_key(): synthetic caches stay valid
    directory = Path(cache_dir) / key
    t0 = time.perf_counter()
    if not force and (cached := _load_manifest(directory)) is not None:
        cached.seconds = time.perf_counter() - t0
        return cached
    s = settings
    with ProgressReporter("bootstrap", enabled=progress) as report:
        report.note(f"no cached models for {', '.join(data.cameras)}: training them in {directory}")
        report.note(f"reading the labelled history of {len(data.cameras)} camera(s) ({data.trained_on})")
        history = data.history()
        if history.num_labelled < MIN_BOOTSTRAP_CROPS:
            raise BootstrapDataError(f"the bootstrap history of {', '.join(data.cameras)} has "
                                     f"{history.num_labelled} labelled crops; at least {MIN_BOOTSTRAP_CROPS} are needed")
        history = history.labelled()
        directory.mkdir(parents=True, exist_ok=True)
        acc: dict[str, float] = {}
        path = None
        if s.edge:
            edge_data = history.subsample(min(1.0, s.edge_crops / len(history)), seed=s.seed)
            train, val = edge_data.split(0.15, seed=s.seed)
            path, acc["edge:shared"] = _train_model(
                "edge model (shared)", s.edge_family, s.edge_hidden, s.edge_input_size, train, val, s.edge_epochs,
                s.edge_lr, s, directory / "edge-shared.pt", device, report,
                {"role": "edge", "trained_on": data.trained_on})
        golden = None
        if s.golden:
            if data.golden is not None:
                report.note(f"making the golden model's {s.golden_crops} training crops and its held-out crops")
                golden_train, golden_val = data.golden()
            else:
                golden_train, golden_val = history.subsample(min(1.0, s.golden_crops / len(history)),
                                                             seed=s.seed + 1).split(0.15, seed=s.seed + 1)
            golden, acc["golden"] = _train_model("golden model", s.golden_family, s.golden_hidden,
                                                 s.golden_input_size, golden_train, golden_val, s.golden_epochs,
                                                 s.golden_lr, s, directory / "golden.pt", device, report,
                                                 {"role": "golden"})
        report.note(f"done in {time.perf_counter() - t0:.0f} s: "
                    + ", ".join(f"{name} {value:.3f} held-out" for name, value in acc.items()))
    edge = dict.fromkeys(data.cameras, path) if path is not None else {}
    result = BootstrapResult(key, directory, edge, golden, acc, reused=False, seconds=time.perf_counter() - t0)
    atomic_write_json(directory / "manifest.json", {
        "key": key, "settings": settings.model_dump(mode="json"), "cameras": data.identity,
        "edge_models": {k: v.name for k, v in edge.items()},
        "golden_model": golden.name if golden else None, "accuracy": acc, "seconds": round(result.seconds, 2)})
    return result
