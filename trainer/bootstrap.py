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
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from common.atomic import atomic_write_json
from trainer.streams.base import WindowData
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
    blob = json.dumps({"v": CACHE_VERSION, "settings": settings.model_dump(),
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

    The manifest is written last, so an interrupted bootstrap is never mistaken for a cached one.
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
    with _Progress(progress) as prog:
        edge, acc = _train_edges(cameras, settings, directory, device, prog)
        golden = None
        if settings.golden:
            golden, acc["golden"] = _train_golden(cameras, settings, directory, device, prog)
    result = BootstrapResult(key, directory, edge, golden, acc, reused=False,
                             seconds=time.perf_counter() - t0)
    atomic_write_json(directory / "manifest.json", {
        "key": key, "settings": settings.model_dump(), "cameras": [c.model_dump() for c in cameras],
        "edge_models": {k: v.name for k, v in edge.items()},
        "golden_model": golden.name if golden else None, "accuracy": acc,
        "seconds": round(result.seconds, 2)})
    return result


def _train_edges(cameras: list[CameraStreamSpec], s: BootstrapSettings, directory: Path, device: str,
                 prog: _Progress) -> tuple[dict[str, Path], dict[str, float]]:
    from trainer.streams.base import concat
    from trainer.streams.synthetic import generate_many

    windows = list(range(-s.history_windows, 0))
    groups = [(c.name, [c]) for c in cameras] if s.per_camera else [("shared", cameras)]
    paths: dict[str, Path] = {}
    acc: dict[str, float] = {}
    for tag, cams in groups:
        per_window = -(-s.edge_crops // (len(cams) * len(windows)))  # render only the crops trained on
        data = concat(generate_many([(c, w, 0, per_window) for c in cams for w in windows]), camera=tag)
        data = data.subsample(min(1.0, s.edge_crops / len(data)), seed=s.seed)
        train, val = data.split(0.15, seed=s.seed)
        path, acc[f"edge:{tag}"] = _fit(f"edge {tag}", s.edge_family, s.edge_hidden, s.edge_input_size,
                                        train, val, s.edge_epochs, s.edge_lr, s, directory / f"edge-{tag}.pt",
                                        device, prog, {"role": "edge", "trained_on": f"windows {windows}"})
        for c in cams:
            paths[c.name] = path
    return paths, acc


def _train_golden(cameras: list[CameraStreamSpec], s: BootstrapSettings, directory: Path, device: str,
                  prog: _Progress) -> tuple[Path, float]:
    from trainer.streams.synthetic import all_conditions_data

    train = all_conditions_data(cameras, s.golden_crops, salt=1)
    val = all_conditions_data(cameras, max(200, s.golden_crops // 6), salt=2)
    return _fit("golden", s.golden_family, s.golden_hidden, s.golden_input_size, train, val, s.golden_epochs,
                s.golden_lr, s, directory / "golden.pt", device, prog, {"role": "golden"})


def _fit(label: str, family: str, hidden: int, input_size: int, train: Any, val: Any, epochs: int, lr: float,
         s: BootstrapSettings, path: Path, device: str, prog: _Progress, extra: dict[str, Any]
         ) -> tuple[Path, float]:
    from trainer.configs import RetrainConfig
    from trainer.models import build_model, save_model
    from trainer.training import train as run_training

    model = build_model(family, hidden, input_size, seed=s.seed)
    config = RetrainConfig(epochs=epochs, layers="all", hidden=hidden, lr=lr, batch_size=s.batch_size)
    task = prog.add(f"{label}: {family} {input_size}px, {len(train)} crops", epochs)
    result = run_training(model, train, config, val=val, device=device, seed=s.seed, cosine_lr=True,
                          callback=lambda st: prog.advance(task, st.val_accuracy))
    acc = float(result.best_val_accuracy or 0.0)
    save_model(model.cpu(), path, **extra, val_accuracy=acc, lr_schedule="cosine")
    return path, acc


class _Progress:
    """A rich progress bar per model (or nothing when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._p: Any = None

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[acc]}"), TimeElapsedColumn())
            self._p.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)

    def add(self, description: str, total: int) -> int:
        return self._p.add_task(description, total=total, acc="") if self._p is not None else 0

    def advance(self, task: int, val_accuracy: float | None) -> None:
        if self._p is not None:
            acc = f"val acc {val_accuracy:.3f}" if val_accuracy is not None else ""
            self._p.update(task, advance=1, acc=acc)


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
    blob = json.dumps({"v": CACHE_VERSION, "settings": settings.model_dump(), "cameras": data.identity},
                      sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]  # as cache_key(): synthetic caches stay valid
    directory = Path(cache_dir) / key
    t0 = time.perf_counter()
    if not force and (cached := _load_manifest(directory)) is not None:
        cached.seconds = time.perf_counter() - t0
        return cached
    history = data.history()
    if history.num_labelled < MIN_BOOTSTRAP_CROPS:
        raise BootstrapDataError(f"the bootstrap history of {', '.join(data.cameras)} has {history.num_labelled} "
                                 f"labelled crops; at least {MIN_BOOTSTRAP_CROPS} are needed")
    history = history.labelled()
    directory.mkdir(parents=True, exist_ok=True)
    s = settings
    with _Progress(progress) as prog:
        edge_data = history.subsample(min(1.0, s.edge_crops / len(history)), seed=s.seed)
        train, val = edge_data.split(0.15, seed=s.seed)
        path, edge_acc = _fit("edge shared", s.edge_family, s.edge_hidden, s.edge_input_size, train, val,
                              s.edge_epochs, s.edge_lr, s, directory / "edge-shared.pt", device, prog,
                              {"role": "edge", "trained_on": data.trained_on})
        acc = {"edge:shared": edge_acc}
        golden = None
        if s.golden:
            if data.golden is not None:
                golden_train, golden_val = data.golden()
            else:
                golden_train, golden_val = history.subsample(min(1.0, s.golden_crops / len(history)),
                                                             seed=s.seed + 1).split(0.15, seed=s.seed + 1)
            golden, acc["golden"] = _fit("golden", s.golden_family, s.golden_hidden, s.golden_input_size,
                                         golden_train, golden_val, s.golden_epochs, s.golden_lr, s,
                                         directory / "golden.pt", device, prog, {"role": "golden"})
    edge = dict.fromkeys(data.cameras, path)
    result = BootstrapResult(key, directory, edge, golden, acc, reused=False, seconds=time.perf_counter() - t0)
    atomic_write_json(directory / "manifest.json", {
        "key": key, "settings": settings.model_dump(), "cameras": data.identity,
        "edge_models": {k: v.name for k, v in edge.items()},
        "golden_model": golden.name if golden else None, "accuracy": acc, "seconds": round(result.seconds, 2)})
    return result
