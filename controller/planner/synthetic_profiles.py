"""Seeded, realistic synthetic profiles: cameras x windows x 18 retraining configs.

The config space mirrors the original's 18: layers trained (last / all) x data fraction (0.1 / 0.5 /
1.0) x epochs (5 / 15 / 30). Per camera and window: the serving model's start accuracy drifts down
from the camera's potential; end accuracies saturate in epochs and data (all layers reach higher but
slower; small data overfits a little with many epochs); costs grow linearly in epochs and data, about
3x for all layers. Predicted columns add micro-profiler-like errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .profiles import CameraState, Problem, RetrainOption

LAYERS = ("last", "all")
DATA = (0.1, 0.5, 1.0)
EPOCHS = (5, 15, 30)


@dataclass(frozen=True)
class ConfigSpec:
    name: str
    layers: str
    data: float
    epochs: int


CONFIGS: tuple[ConfigSpec, ...] = tuple(
    ConfigSpec(f"{layers}-d{data:g}-e{epochs}", layers, data, epochs)
    for layers in LAYERS for data in DATA for epochs in EPOCHS
)


@dataclass(frozen=True)
class ProfileRow:
    camera: str
    window: int
    config: str
    start_accuracy: float
    end_accuracy: float
    gpu_seconds: float
    predicted_end_accuracy: float
    predicted_gpu_seconds: float


def generate(cameras: int = 10, windows: int = 3, seed: int = 0, samples: int = 3000,
             train_rate_all: float = 150.0, prediction_error: float = 0.04,
             configs: int = 18) -> list[ProfileRow]:
    """Rows for cameras x windows x configs (first `configs` of the 18)."""
    rng = np.random.default_rng(seed)
    specs = CONFIGS[:configs]
    rows: list[ProfileRow] = []
    for c in range(cameras):
        name = f"cam{c:03d}"
        potential = rng.uniform(0.78, 0.93)
        speed = rng.uniform(0.5, 1.5)  # how fast this camera's data is learned
        n_samples = samples * rng.uniform(0.6, 1.4)
        drift = 0.0
        for w in range(windows):
            drift = min(0.35, 0.6 * drift + rng.uniform(0.05, 0.22))  # scene drift hurts the old model
            start = float(np.clip(potential - drift, 0.2, 0.95))
            headroom = potential - start
            for s in specs:
                ceiling = headroom * (1.0 if s.layers == "all" else 0.8) * (0.55 + 0.45 * s.data ** 0.4)
                k = speed * (0.35 if s.layers == "all" else 0.6) * (0.5 + s.data)
                gain = ceiling * (1.0 - np.exp(-k * s.epochs / 5.0))
                if s.data <= 0.1 and s.epochs >= 30:
                    gain -= 0.02 * (1.5 if s.layers == "all" else 1.0)  # overfitting a small sample
                end = float(np.clip(start + gain + rng.normal(0, 0.01), 0.0, 1.0))
                rate = train_rate_all * (3.0 if s.layers == "last" else 1.0)
                cost = float(s.epochs * s.data * n_samples / rate * rng.uniform(0.9, 1.1))
                p_end = float(np.clip(end + rng.normal(0, prediction_error), 0.0, 1.0))
                p_cost = float(cost * np.exp(rng.normal(0, 0.15)))
                rows.append(ProfileRow(name, w, s.name, round(start, 5), round(end, 5), round(cost, 3),
                                       round(p_end, 5), round(p_cost, 3)))
    return rows


def problem_from_rows(rows: list[ProfileRow], window_index: int, gpus: int, *, window: float = 200.0,
                      delta: float = 0.1, predicted: bool = False) -> Problem:
    """A planning problem for one window of generated rows."""
    cams: dict[str, list[ProfileRow]] = {}
    for r in rows:
        if r.window == window_index:
            cams.setdefault(r.camera, []).append(r)
    states = []
    for name, rs in cams.items():
        opts = tuple(
            RetrainOption(name, r.config, r.predicted_end_accuracy if predicted else r.end_accuracy,
                          r.predicted_gpu_seconds if predicted else r.gpu_seconds)
            for r in rs
        )
        states.append(CameraState(name, rs[0].start_accuracy, opts))
    return Problem(tuple(states), gpus, window=window, delta=delta)


def random_problem(cameras: int, gpus: int, configs: int = 18, seed: int = 0, window: float = 200.0,
                   delta: float = 0.1) -> Problem:
    """One window of a generated case (window index 0)."""
    rows = generate(cameras, 1, seed=seed, configs=configs)
    return problem_from_rows(rows, 0, gpus, window=window, delta=delta)
