"""Retraining configurations (the knobs the planner picks from) and the default grid.

The original had 6 hyperparameter sets profiled at 5 / 15 / 30 epochs = 18 configurations. Here the
6 sets are {hidden 64 + head only at lr 0.01, hidden 1024 + all layers at lr 0.001} x subsample
{0.1, 0.5, 1.0}; each set is micro-profiled once and its 5/15/30-epoch variants are extrapolated from
that one learning curve (configs that differ only in epochs share a `profile_key`). `full_grid()` gives the whole cross
product (2 hidden x 3 layer choices x 3 subsamples x 3 epochs = 54) for users who want more.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_SCHEDULE_TAGS = {"cosine": "cos"}  # name part of each learning-rate schedule but the default


class RetrainConfig(BaseModel):
    """One retraining configuration. Frozen and hashable, so it can key dicts and profiles."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(5, ge=1, le=1000)
    layers: Literal["head", "last_block", "all"] = "all"
    subsample: float = Field(1.0, gt=0.0, le=1.0, description="fraction of the window's labelled data")
    batch_size: int = Field(32, ge=1, le=4096)
    lr: float = Field(0.01, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    hidden: int = Field(64, ge=1, le=8192, description="head width; a different width resets the head")
    history_weight: float = Field(0.0, ge=0.0, description="loss weight of replayed historical samples")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: decay lr along a half cosine over the epochs (trainer.fit.scheduled_lr)")

    @property
    def profile_key(self) -> str:
        """The name without epochs: configs sharing it share one micro-profiling run."""
        return self._name(with_epochs=False)

    @property
    def name(self) -> str:
        """Stable short name, e.g. 'e15-all-h1024-s0.5' (+ '-b64', '-lr0.001', '-cos', ... when not default:
        a config with every new field at its default keeps the name it had before that field existed)."""
        return self._name(with_epochs=True)

    def _name(self, with_epochs: bool) -> str:
        parts = [f"e{self.epochs}"] if with_epochs else []
        parts += [{"head": "head", "last_block": "last", "all": "all"}[self.layers], f"h{self.hidden}",
                  f"s{self.subsample:g}"]
        defaults = RetrainConfig.model_fields
        for key, tag in (("batch_size", "b"), ("lr", "lr"), ("momentum", "m"), ("history_weight", "hw")):
            value = getattr(self, key)
            if value != defaults[key].default:
                parts.append(f"{tag}{value:g}")
        if self.lr_schedule != defaults["lr_schedule"].default:
            parts.append(_SCHEDULE_TAGS[self.lr_schedule])
        return "-".join(parts)

    @classmethod
    def from_name(cls, name: str) -> RetrainConfig:
        """Inverse of `name` (so profiles and CSVs can refer to configs by name)."""
        fields: dict[str, object] = {}
        layer_tags = {"head": "head", "last": "last_block", "all": "all"}
        schedules = {tag: schedule for schedule, tag in _SCHEDULE_TAGS.items()}
        for part in name.split("-"):
            if part in layer_tags:
                fields["layers"] = layer_tags[part]
                continue
            if part in schedules:
                fields["lr_schedule"] = schedules[part]
                continue
            for tag, key, conv in (("hw", "history_weight", float), ("lr", "lr", float), ("e", "epochs", int),
                                   ("h", "hidden", int), ("s", "subsample", float), ("b", "batch_size", int),
                                   ("m", "momentum", float)):
                if part.startswith(tag):
                    try:
                        fields[key] = conv(part[len(tag):])
                    except ValueError as exc:
                        raise ValueError(f"bad config name {name!r}: cannot read {part!r}") from exc
                    break
            else:
                raise ValueError(f"bad config name {name!r}: unknown part {part!r}")
        return cls(**fields)  # type: ignore[arg-type]


DEFAULT_EPOCHS: tuple[int, ...] = (5, 15, 30)
DEFAULT_SUBSAMPLES: tuple[float, ...] = (0.1, 0.5, 1.0)
# (hidden, layers, lr) of the 6 base sets: a cheap and a thorough way to retrain. All layers train at
# the original's lr 0.001 (at 0.01, fine-tuning the whole network on a few hundred crops of a night scene
# can diverge); the small head alone learns too slowly at 0.001 and keeps 0.01.
DEFAULT_TRUNKS: tuple[tuple[int, Literal["head", "all"], float], ...] = ((64, "head", 0.01), (1024, "all", 0.001))


def default_grid(**overrides: object) -> list[RetrainConfig]:
    """The 18 configurations equivalent to the original's (see the module docstring)."""
    return [RetrainConfig(**{"hidden": h, "layers": layers, "lr": lr, "subsample": s, "epochs": e,  # type: ignore[arg-type]
                             **overrides})
            for (h, layers, lr), s, e in itertools.product(DEFAULT_TRUNKS, DEFAULT_SUBSAMPLES, DEFAULT_EPOCHS)]


def full_grid(**overrides: object) -> list[RetrainConfig]:
    """hidden {64, 1024} x layers {head, last_block, all} x subsample x epochs (54 configurations)."""
    return [RetrainConfig(hidden=h, layers=layers, subsample=s, epochs=e, **overrides)  # type: ignore[arg-type]
            for h, layers, s, e in itertools.product((64, 1024), ("head", "last_block", "all"),
                                                      DEFAULT_SUBSAMPLES, DEFAULT_EPOCHS)]
