"""`fit()`: the one epoch loop, for the retraining worker, the bootstrap and the micro-profiler.

In the manner of torchvision's classification reference: `Trainer.run_epoch` trains one epoch and
`Trainer.evaluate` validates; `fit` drives them for config.epochs with the learning-rate schedule of the
config, keeps track of the best validation epoch (and ends with its weights, unless told not to), resumes
from a `FitState` after a restart, and hands every epoch's `EpochStats` to the caller, who checkpoints,
reports progress or checks a budget there. A stop request is honoured between batches and between
epochs; the epochs completed until then count.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainer.configs import RetrainConfig
from trainer.models import CropClassifier
from trainer.streams.base import WindowData
from trainer.training import StopRequested, Trainer, backbone_is_frozen


def scheduled_lr(config: RetrainConfig, epochs_done: int) -> float:
    """The learning rate of the epoch that follows `epochs_done` completed ones.

    cosine: from config.lr along a half cosine, epoch e of E (0-based) at lr * (1 + cos(pi e / E)) / 2.
    Training from scratch in a few epochs then ends with the weights moving slowly, so BatchNorm's running
    statistics catch up with them: on the bootstrap's 32-px edge models it gave 0.94-0.96 held-out
    accuracy where a constant rate gave 0.84-0.91 (BENCHMARKS.md, session 7)."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * epochs_done / config.epochs))
    return config.lr


@dataclass
class FitState:
    """What a fit needs to carry on after a restart: saved after an epoch, passed back as resume_state."""

    model: dict[str, torch.Tensor]  # the head alone when `partial` (the backbone is the base model's)
    partial: bool
    trainer: dict[str, Any]  # Trainer.state(): epochs done and the optimizer
    best_val_accuracy: float | None
    best_epoch: int
    start_val_accuracy: float | None

    @property
    def epoch(self) -> int:
        return int(self.trainer["epoch"])

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "partial": self.partial, "trainer": self.trainer,
                "best_val_accuracy": self.best_val_accuracy, "best_epoch": self.best_epoch,
                "start_val_accuracy": self.start_val_accuracy}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitState:
        return cls(model=d["model"], partial=bool(d.get("partial", False)), trainer=d["trainer"],
                   best_val_accuracy=d["best_val_accuracy"], best_epoch=int(d["best_epoch"]),
                   start_val_accuracy=d.get("start_val_accuracy"))


@dataclass(frozen=True)
class FitStart:
    """Handed to on_start once the data is on the device, before the first epoch."""

    epoch: int  # epochs already done: non-zero when resumed
    epochs: int
    train_crops: int  # trained on per epoch: the window's sample and any replayed history
    start_val_accuracy: float | None  # the model as given (or as recorded in the resumed state)
    start_accuracy_seconds: float  # what measuring it took: one forward pass over the validation crops
    best_val_accuracy: float | None  # so far (from the resumed state)


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based: epochs completed so far (including those before a resume)
    epochs: int
    loss: float
    val_accuracy: float | None
    best_val_accuracy: float | None  # best so far, this epoch included
    best_epoch: int
    lr: float  # the learning rate the epoch trained at
    img_per_s: float
    train_seconds: float  # the training pass alone
    seconds: float  # training and validation
    # The state to checkpoint after this epoch. It refers to the live weights: call it from on_epoch.
    resume_state: Callable[[], FitState] = field(repr=False, compare=False)

    @property
    def improved(self) -> bool:
        """This epoch is the best validation epoch so far."""
        return self.val_accuracy is not None and self.best_epoch == self.epoch


@dataclass
class TrainResult:
    epochs_done: int  # including those before a resume
    best_val_accuracy: float | None
    best_epoch: int
    seconds: float  # this call's wall time
    img_per_s: float  # crops trained per second of training pass (validation not counted), this call
    history: list[EpochStats] = field(default_factory=list)  # this call's epochs
    stopped: bool = False  # a stop request ended it (one seen right after the last epoch counts too)
    start_val_accuracy: float | None = None
    start_accuracy_seconds: float = 0.0  # what measuring start_val_accuracy took (0 when not measured)


def fit(model: CropClassifier, config: RetrainConfig, train: WindowData, validation: WindowData | None = None,
        *, device: str | torch.device = "cpu", seed: int = 0, history: WindowData | None = None,
        keep_best: bool = True, start_accuracy: bool = False, resume_state: FitState | None = None,
        on_start: Callable[[FitStart], None] | None = None,
        on_epoch: Callable[[EpochStats], None] | None = None,
        should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train `model` in place on the labelled crops of `train` (and `history`, weighted per the config)
    for config.epochs, validating on `validation` after every epoch when it has labelled crops.

    keep_best: end with the weights of the best validation epoch (a copy of them is kept in memory);
    with False the model ends with its last epoch, and a caller that wants the best one saves it from
    on_epoch when `stats.improved`. start_accuracy: measure the model as given on `validation` before
    training (head-only training reuses those backbone features for every later validation).
    resume_state: carry on from a FitState saved after an earlier epoch of the same job; its best epoch's
    weights are not in memory, so it needs keep_best=False. should_stop is polled between batches and
    after every epoch's on_epoch. Raises EmptyDataError when `train` has no labelled crops.
    """
    if resume_state is not None and keep_best:
        raise ValueError("a resumed fit cannot restore a best epoch from before the restart: pass "
                         "keep_best=False and save the best epoch from on_epoch")
    t0 = time.perf_counter()
    trainer = Trainer(model, train, config, device, seed, history)
    best_acc: float | None = None
    best_epoch, start_acc, start_seconds = 0, None, 0.0
    if resume_state is not None:
        trainer.model.load_state_dict(resume_state.model, strict=not resume_state.partial)
        trainer.load_state(resume_state.trainer)
        best_acc, best_epoch = resume_state.best_val_accuracy, resume_state.best_epoch
        start_acc = resume_state.start_val_accuracy
    elif start_accuracy:
        if validation is None:
            raise ValueError("start_accuracy needs validation data")
        t_start = time.perf_counter()
        start_acc = trainer.serving_accuracy(validation)
        start_seconds = time.perf_counter() - t_start
    if on_start is not None:
        on_start(FitStart(trainer.epoch, config.epochs, trainer.n, start_acc, start_seconds, best_acc))

    stats_history: list[EpochStats] = []
    best_weights: dict[str, torch.Tensor] | None = None
    samples, train_seconds, stopped = 0, 0.0, False
    val = validation if validation is not None and validation.num_labelled > 0 else None
    try:
        while trainer.epoch < config.epochs:
            t_epoch = time.perf_counter()
            lr = scheduled_lr(config, trainer.epoch)
            trainer.set_learning_rate(lr)
            loss, img_per_s = trainer.run_epoch(should_stop)
            epoch_train_seconds = time.perf_counter() - t_epoch
            samples += trainer.n
            train_seconds += epoch_train_seconds
            acc = trainer.evaluate(val) if val is not None else None
            if acc is not None and (best_acc is None or acc > best_acc):
                best_acc, best_epoch = acc, trainer.epoch
                if keep_best:
                    best_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            stats = EpochStats(trainer.epoch, config.epochs, loss, acc, best_acc, best_epoch, lr, img_per_s,
                               epoch_train_seconds, time.perf_counter() - t_epoch,
                               functools.partial(_resume_state, trainer, best_acc, best_epoch, start_acc))
            stats_history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
            if should_stop is not None and should_stop():
                raise StopRequested()
    except StopRequested:
        stopped = True
    if keep_best and best_weights is not None:
        trainer.model.load_state_dict(best_weights)
    return TrainResult(trainer.epoch, best_acc, best_epoch, time.perf_counter() - t0,
                       samples / train_seconds if train_seconds > 0 else 0.0, stats_history, stopped, start_acc,
                       start_seconds)


def _resume_state(trainer: Trainer, best: float | None, best_epoch: int, start_acc: float | None) -> FitState:
    weights = trainer.model.state_dict()
    partial = backbone_is_frozen(trainer.config)
    if partial:  # the backbone is the base model's and never changes: keep the checkpoint small
        weights = {k: v for k, v in weights.items() if k.startswith("head.")}
    return FitState(weights, partial, trainer.state(), best, best_epoch, start_acc)
