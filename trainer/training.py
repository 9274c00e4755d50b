"""One epoch of training, evaluation and prediction for a RetrainConfig on a window's labelled crops.

`Trainer` holds the model, optimizer and data on the device and runs one epoch at a time; the epoch loop
(validation, keep-best, learning-rate schedule, resume, callbacks) is `trainer.fit.fit`. Head-only
training computes the frozen backbone's features once and trains (and validates, through
`Trainer.evaluate`) the head on them. On CUDA: bf16 autocast and channels-last; on CPU: float32.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainer.configs import RetrainConfig
from trainer.models import CropClassifier
from trainer.streams.base import WindowData


class EmptyDataError(ValueError):
    """The window has no labelled crops to train or evaluate on."""


class StopRequested(Exception):
    """Raised inside an epoch when the stop callback asks to stop."""


def backbone_is_frozen(config: RetrainConfig) -> bool:
    """Head-only training never changes the backbone: its features can be computed once, and a checkpoint
    of the training needs the head alone."""
    return config.layers == "head"


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [N,H,W,3] -> uint8 [N,3,H,W] on the device (converted to float per batch: 4x less memory)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(device)


def _prep(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = batch.float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def _in_batches(model: CropClassifier, fn: Callable[[torch.Tensor], torch.Tensor],
                images: np.ndarray | torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """fn over crops (uint8 [N,H,W,3] on the host, or [N,3,H,W] already on the device), batch by batch,
    with the model in eval mode; float32 [N, ...] on the device."""
    was_training = model.training
    model.eval()
    try:
        out = []
        for i in range(0, len(images), batch_size):
            batch = images[i:i + batch_size]
            x = _prep(_to_tensor(batch, device) if isinstance(batch, np.ndarray) else batch, device)
            with _autocast(device):
                out.append(fn(x).float())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, device=device)


def predict(model: CropClassifier, images: np.ndarray, device: str | torch.device = "cpu",
            batch_size: int = 256) -> np.ndarray:
    """Class predictions [N] int64 for uint8 crops [N,H,W,3]."""
    if len(images) == 0:
        return np.empty(0, dtype=np.int64)
    return _in_batches(model, model, images, torch.device(device), batch_size).argmax(1).cpu().numpy()


def _labelled(data: WindowData) -> WindowData:
    lab = data.labelled()
    if len(lab) == 0:
        raise EmptyDataError(f"no labelled crops to evaluate on (camera {data.camera!r}, window {data.window})")
    return lab


def evaluate(model: CropClassifier, data: WindowData, device: str | torch.device = "cpu",
             batch_size: int = 256) -> float:
    """Accuracy on the labelled crops of `data` (raises EmptyDataError when none are labelled)."""
    lab = _labelled(data)
    return float((predict(model, lab.images, device, batch_size) == lab.labels).mean())


class Trainer:
    """SGD on the labelled crops of `data` (uniformly subsampled per the config), epoch by epoch."""

    def __init__(self, model: CropClassifier, data: WindowData, config: RetrainConfig,
                 device: str | torch.device = "cpu", seed: int = 0, history: WindowData | None = None) -> None:
        self.device = torch.device(device)
        self.config = config
        self.seed = seed
        train = data.labelled().subsample(config.subsample, seed=seed)
        if len(train) == 0:
            raise EmptyDataError(f"no labelled crops to train on (camera {data.camera!r}, window {data.window}, "
                                 f"{len(data)} crops, {data.num_labelled} labelled)")
        images, labels = train.images, train.labels
        weights = np.ones(len(train), dtype=np.float32)
        if history is not None and config.history_weight > 0 and history.num_labelled:
            hist = history.labelled()
            if hist.image_size != train.image_size:
                raise ValueError(f"history crops are {hist.image_size}px, window crops {train.image_size}px")
            images = np.concatenate([images, hist.images])
            labels = np.concatenate([labels, hist.labels])
            weights = np.concatenate([weights, np.full(len(hist), config.history_weight, np.float32)])
        if labels.max() >= len(model.meta.classes):  # (a class list changed under a model: say so, not IndexError)
            raise ValueError(f"labels reach class {int(labels.max())}, the model has {len(model.meta.classes)} "
                             f"classes ({', '.join(model.meta.classes)})")
        self.n = len(labels)
        self.images = _to_tensor(images, self.device)
        self.labels = torch.from_numpy(labels).to(self.device)
        self.weights = torch.from_numpy(weights).to(self.device)

        self._serving_head = model.head.to(self.device)  # the model as given (a new width replaces it)
        if config.hidden != model.meta.hidden:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model.reset_head(config.hidden)
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest kernels once
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.params = self.model.set_trainable(config.layers)
        self.optimizer = torch.optim.SGD(self.params, lr=config.lr, momentum=config.momentum)
        self.epoch = 0
        # A frozen backbone (in eval mode) gives the same features every epoch: they are computed once
        # (in the first epoch) and every epoch then trains the head alone.
        self.caches_features = backbone_is_frozen(config)
        self._features: torch.Tensor | None = None
        self._val: tuple[WindowData, torch.Tensor] | None = None  # validation data and its features

    def _image_features(self, images: torch.Tensor) -> torch.Tensor:
        return _in_batches(self.model, self.model.features, images, self.device)

    def _head_accuracy(self, data: WindowData, head: torch.nn.Module) -> float:
        lab = _labelled(data)
        if self._val is not None and self._val[0] is data:
            feats = self._val[1]
        else:
            feats = self._image_features(_to_tensor(lab.images, self.device))
            if self.caches_features:  # the backbone never changes: reuse these on every later call
                self._val = (data, feats)
        with torch.no_grad():
            pred = head(feats).argmax(1).cpu().numpy()
        return float((pred == lab.labels).mean())

    def evaluate(self, data: WindowData) -> float:
        """Accuracy of the model being trained on the labelled crops of `data`; for head-only training the
        backbone features of `data` are computed once and reused on every later call with the same data."""
        if not self.caches_features:
            return evaluate(self.model, data, self.device)
        return self._head_accuracy(data, self.model.head)

    def serving_accuracy(self, data: WindowData) -> float:
        """Accuracy of the model as it was given (its own head, even when the config put a new one in its
        place) on `data`: call before the first epoch. Head-only training reuses these features."""
        if self.epoch:
            raise RuntimeError("serving_accuracy is the model before training: call it before the first epoch")
        return self._head_accuracy(data, self._serving_head)

    def run_epoch(self, stop: Callable[[], bool] | None = None) -> tuple[float, float]:
        """One pass over the data; returns (mean loss, img/s). Raises StopRequested between batches."""
        cfg, dev = self.config, self.device
        t0 = time.perf_counter()
        if self.caches_features and self._features is None:
            self._features = self._image_features(self.images)
        self.model.train_mode(cfg.layers)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen).to(dev)
        # The loss is summed on the device: reading it per batch would wait for the GPU at every step.
        total, seen = torch.zeros((), device=dev), 0
        bs = cfg.batch_size
        for i in range(0, self.n, bs):
            if stop is not None and stop():
                raise StopRequested()
            idx = order[i:i + bs]
            if idx.numel() < 2 and self.n >= 2:  # BatchNorm cannot train on a batch of one
                continue
            y, w = self.labels[idx], self.weights[idx]
            with _autocast(dev):
                if self._features is not None:
                    logits = self.model.head(self._features[idx])
                else:
                    logits = self.model(_prep(self.images[idx], dev))
            loss = (F.cross_entropy(logits.float(), y, reduction="none") * w).sum() / w.sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * idx.numel()
            seen += idx.numel()
        mean_loss = float(total) / max(seen, 1)  # waits for the epoch's last step
        dt = time.perf_counter() - t0
        self.epoch += 1
        return mean_loss, seen / dt if dt > 0 else 0.0

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.optimizer.load_state_dict(state["optimizer"])
