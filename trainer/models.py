"""Edge and golden models: a torchvision backbone plus the original's head (Linear -> ReLU -> Linear).

The model takes float32 NCHW pixels in [0, 1] and normalises inside, so training, evaluation, the
ONNX export and Triton clients all feed the same thing (raw pixels / 255). Inputs whose size differs
from `input_size` are resized bilinearly inside the model.

The head's layout follows its weights (Linear layers with a ReLU between them): ours is
Linear -> ReLU -> Linear, a user's torchvision model brings one Linear (its `fc`). Family "onnx" is a
user's ONNX model converted to torch (trainer/converted.py): its graph up to the last fully connected
layers is the backbone; its checkpoint carries the ONNX file to rebuild that graph from.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from common.atomic import atomic_write
from trainer.streams.base import CLASSES

EDGE_FAMILIES: tuple[str, ...] = ("resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5")
GOLDEN_FAMILIES: tuple[str, ...] = ("resnet34", "resnet50", "wide_resnet50_2", "resnext50_32x4d")
CONVERTED = "onnx"  # a user's ONNX model converted to torch (trainer/converted.py)
FAMILIES = EDGE_FAMILIES + GOLDEN_FAMILIES + (CONVERTED,)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_FORMAT = "ekya-model/1"

# The modules trained by layers="last_block" (besides the head), per family.
_LAST_BLOCK: dict[str, tuple[str, ...]] = {
    "resnet18": ("layer4",), "resnet34": ("layer4",), "resnet50": ("layer4",),
    "wide_resnet50_2": ("layer4",), "resnext50_32x4d": ("layer4",),
    "mobilenet_v3_small": ("features.11", "features.12"),
    "shufflenet_v2_x0_5": ("stage4", "conv5"),
}

Layers = Literal["head", "last_block", "all"]


class ModelError(ValueError):
    """Bad model settings or an unreadable / incompatible checkpoint."""


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to rebuild a model from its weights (stored in the checkpoint)."""

    family: str = "resnet18"
    hidden: int = 64
    input_size: int = 64
    classes: tuple[str, ...] = CLASSES
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: camera, window, config, accuracy

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ModelError(f"unknown model family {self.family!r}; choose from {', '.join(FAMILIES)}")
        if self.hidden < 1:
            raise ModelError(f"hidden must be >= 1, got {self.hidden}")
        if not 16 <= self.input_size <= 512:
            raise ModelError(f"input_size must be in [16, 512], got {self.input_size}")
        if len(self.classes) < 2:
            raise ModelError(f"a classifier needs at least 2 classes, got {list(self.classes)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"], d["mean"], d["std"] = list(self.classes), list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        return cls(family=str(d["family"]), hidden=int(d["hidden"]), input_size=int(d["input_size"]),
                   classes=tuple(d.get("classes", CLASSES)), mean=tuple(d.get("mean", IMAGENET_MEAN)),
                   std=tuple(d.get("std", IMAGENET_STD)), extra=dict(d.get("extra", {})))


def _backbone(family: str) -> tuple[nn.Module, int]:
    """A randomly initialised torchvision network with its classifier removed, and its feature width."""
    net = getattr(torchvision.models, family)(weights=None)
    if family == "mobilenet_v3_small":
        width = net.classifier[0].in_features
        net.classifier = nn.Identity()
    else:
        width = net.fc.in_features
        net.fc = nn.Identity()
    return net, width


def _head(widths: list[int]) -> nn.Sequential:
    """Linear layers of these widths (input first, classes last) with a ReLU between two."""
    layers: list[nn.Module] = []
    for i, (inp, out) in enumerate(zip(widths, widths[1:])):
        if i:
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(inp, out))
    return nn.Sequential(*layers)


def head_widths(state: dict[str, torch.Tensor]) -> list[int] | None:
    """The head's layer widths as its weights give them (Linear at even places, ReLU between), or None
    where the weights hold no head of that layout."""
    linear = sorted(int(k.split(".")[1]) for k in state if k.startswith("head.") and k.endswith(".weight")
                    and k.split(".")[1].isdigit())
    if not linear or linear != list(range(0, 2 * len(linear), 2)):
        return None
    shapes = [tuple(state[f"head.{i}.weight"].shape) for i in linear]
    if any(len(shape) != 2 for shape in shapes) or any(a[0] != b[1] for a, b in zip(shapes, shapes[1:])):
        return None
    return [shapes[0][1]] + [shape[0] for shape in shapes]


class CropClassifier(nn.Module):
    """backbone -> Linear(width, hidden) -> ReLU -> Linear(hidden, classes); input [B,3,H,W] in [0,1].

    `backbone` (with its feature width) and `widths` (the head's) are given for a user's model; by
    default the family's torchvision backbone and our two-layer head."""

    def __init__(self, meta: ModelMeta, backbone: tuple[nn.Module, int] | None = None,
                 widths: list[int] | None = None, source_onnx: bytes | None = None) -> None:
        super().__init__()
        self.meta = meta
        if backbone is None and meta.family == CONVERTED:
            raise ModelError("an onnx-family model is rebuilt from its ONNX graph (trainer/converted.py)")
        self.backbone, width = backbone or _backbone(meta.family)
        self.source_onnx = source_onnx  # family onnx: the graph the backbone was converted from
        widths = widths or [width, meta.hidden, len(meta.classes)]
        if widths[0] != width or widths[-1] != len(meta.classes):
            raise ModelError(f"a head of widths {widths} does not fit a backbone of {width} features and "
                             f"{len(meta.classes)} classes")
        self.head = _head(widths)
        self.register_buffer("mean", torch.tensor(meta.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(meta.std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's output [B, width] (the head's input) for images [B,3,H,W] in [0,1]."""
        s = self.meta.input_size
        if x.shape[-1] != s or x.shape[-2] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        return self.backbone(x)

    def reset_head(self, hidden: int | None = None) -> None:
        """A fresh head (a retraining config may ask for another hidden size than the base model's)."""
        hidden = self.meta.hidden if hidden is None else hidden
        width = self.head[0].in_features
        device = self.head[0].weight.device
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, len(self.meta.classes))).to(device)
        self.meta = ModelMeta(**{**self.meta.__dict__, "hidden": hidden})

    def set_trainable(self, layers: Layers) -> list[nn.Parameter]:
        """Freeze all but `layers`; return the parameters to optimise. Frozen parts stay in eval mode
        during training (see `train_mode`) so their BatchNorm statistics are not updated either."""
        if layers not in ("head", "last_block", "all"):
            raise ModelError(f"layers must be head, last_block or all, got {layers!r}")
        train_names = self.trainable_module_names(layers)
        for name, p in self.named_parameters():
            p.requires_grad = any(name == t or name.startswith(t + ".") for t in train_names)
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_module_names(self, layers: Layers) -> tuple[str, ...]:
        if layers == "all":
            return ("backbone", "head")
        if layers == "last_block":
            return ("head",) + tuple(f"backbone.{m}" for m in self._last_block())
        return ("head",)

    def _last_block(self) -> tuple[str, ...]:
        if self.meta.family != CONVERTED:
            return _LAST_BLOCK[self.meta.family]
        # a converted graph has no named blocks: its last quarter of layers with weights stands for one
        owners = [name for name, m in self.backbone.named_modules()
                  if name and any(True for _ in m.parameters(recurse=False))]
        return tuple(owners[-max(1, len(owners) // 4):])

    def train_mode(self, layers: Layers) -> None:
        """Training mode for the trained modules only; frozen BatchNorms keep their statistics."""
        self.eval()
        for name in self.trainable_module_names(layers):
            self.get_submodule(name).train()


def build_model(family: str = "resnet18", hidden: int = 64, input_size: int = 64, seed: int | None = 0,
                classes: tuple[str, ...] = CLASSES, **extra: Any) -> CropClassifier:
    """A randomly initialised model (nothing is downloaded: weights=None)."""
    meta = ModelMeta(family=family, hidden=hidden, input_size=input_size, classes=tuple(classes), extra=dict(extra))
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return CropClassifier(meta)
    return CropClassifier(meta)


def save_model(model: CropClassifier, path: str | os.PathLike[str], **extra: Any) -> Path:
    """Write weights + metadata as one file, atomically. `extra` is merged into meta.extra."""
    meta = model.meta
    if extra:
        meta = ModelMeta(**{**meta.__dict__, "extra": {**meta.extra, **extra}})
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "meta": meta.to_dict(), "state_dict": state}
    if meta.family == CONVERTED:
        if model.source_onnx is None:
            raise ModelError("an onnx-family model without the ONNX graph it was converted from")
        obj["onnx"] = model.source_onnx
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> CropClassifier:
    """Rebuild a model saved by `save_model`; raises ModelError with the reason if it cannot."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise ModelError(f"{p}: unreadable model checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{p}: not an {CHECKPOINT_FORMAT} checkpoint")
    meta = ModelMeta.from_dict(obj["meta"])
    model = model_for_weights(meta, obj["state_dict"], obj.get("onnx"), p)
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"{p}: weights do not match {meta.family}/hidden {meta.hidden}: {exc}") from exc
    return model.to(map_location)


def model_for_weights(meta: ModelMeta, state: dict[str, torch.Tensor], source_onnx: bytes | None,
                      path: Path) -> CropClassifier:
    """An untrained model of the layout `state` holds: the head as wide as its weights, and for family
    onnx the backbone converted again from the ONNX graph the checkpoint carries."""
    widths = head_widths(state)
    if meta.family != CONVERTED:
        return CropClassifier(meta, widths=widths)
    if not isinstance(source_onnx, bytes):
        raise ModelError(f"{path}: an onnx-family checkpoint without its ONNX graph")
    from trainer.converted import split_onnx_classifier

    backbone, head = split_onnx_classifier(source_onnx, str(path))
    return CropClassifier(meta, backbone=(backbone, head[0].in_features), widths=widths, source_onnx=source_onnx)


def read_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """The metadata of a checkpoint (loads the file; checkpoints of edge models are small)."""
    return load_model(path).meta
