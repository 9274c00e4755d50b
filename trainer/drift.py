"""The drift experiment (bench/drift.py and the tests): a model trained on a camera's history loses
accuracy as the camera drifts, and retraining on recent frames wins it back."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from trainer.configs import RetrainConfig
from trainer.fit import fit
from trainer.models import build_model
from trainer.streams.base import concat
from trainer.streams.synthetic import CameraStreamSpec, generate_window
from trainer.training import evaluate


@dataclass
class DriftResult:
    acc_on_window0: float
    acc_on_window5: float
    retrained_acc_on_window5: float

    @property
    def drop(self) -> float:
        return self.acc_on_window0 - self.acc_on_window5

    @property
    def recovered(self) -> float:
        return self.retrained_acc_on_window5 - self.acc_on_window5

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def drift_experiment(spec: CameraStreamSpec, family: str = "resnet18", input_size: int | None = None,
                     history_windows: int = 2, pretrain: RetrainConfig | None = None,
                     retrain: RetrainConfig | None = None, late_window: int = 5, device: str = "cpu",
                     seed: int = 0, log: bool = False) -> DriftResult:
    hist = concat([generate_window(spec, w) for w in range(-history_windows, 0)])
    hist_train, hist_val = hist.split(0.15, seed=seed)
    w0, late = generate_window(spec, 0), generate_window(spec, late_window)
    model = build_model(family, 64, input_size or spec.crop_size, seed=seed)
    pretrain = pretrain or RetrainConfig(epochs=5, layers="all", lr=0.02)
    retrain = retrain or RetrainConfig(epochs=5, layers="all", lr=0.01)
    cb = (lambda s: print(f"  epoch {s.epoch}: loss {s.loss:.3f} val {s.val_accuracy} {s.img_per_s:.0f} img/s",
                          flush=True)) if log else None
    fit(model, pretrain, hist_train, hist_val, device=device, seed=seed, on_epoch=cb)
    a0, a5 = evaluate(model, w0, device), evaluate(model, late, device)
    late_train, late_held = late.split(0.3, seed=seed)
    fit(model, retrain, late_train, device=device, seed=seed, on_epoch=cb)
    return DriftResult(a0, a5, evaluate(model, late_held, device))
