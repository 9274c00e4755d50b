"""The registry of frame-source kinds: what a camera's `source:` section can be.

A kind is one record (`SourceKind`) registered once: the pydantic model of its config section (with
`kind: Literal[name]`), how a camera opens it, what history the bootstrap trains on, the inference
profile its tracks give, and whether it has ground truth. The deployment config, the camera client,
the bootstrap and the planner's inference profile all look kinds up here, so a new kind is one module
that calls `register_source_kind`.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from sources.streaming import StreamingFrameSource
from trainer.streams.base import CLASSES, WindowData


class SourceError(ValueError):
    """A source that cannot give what is asked of it (no labels to bootstrap from, a bad manifest...)."""


@dataclass(frozen=True)
class SourceContext:
    """What a source needs from the deployment besides its own section."""

    camera: str  # the configured camera name
    crop_size: int  # the edge model's input size: crops are made at this size
    window_seconds: float  # the deployment's window clock
    history_windows: int  # windows -history_windows..-1 are the bootstrap's history
    classes: tuple[str, ...] = CLASSES  # the deployment's class list: what labels name and index
    triton_url: str | None = None  # the camera's Triton (gRPC host:port), for sources that call a model there


class FrameSource(Protocol):
    """A camera's frames, window by window, on the deployment's window clock."""

    fps: float

    def frames_per_window(self, window_seconds: float) -> int: ...

    def window(self, window: int, window_seconds: float) -> WindowData:
        """All crops of `window`, frame_index counted globally (window * frames_per_window + k)."""
        ...


StrideProfile = list[tuple[int, float]]  # (frame stride, accuracy relative to stride 1)


def _no_profile(source: Any, ctx: SourceContext) -> StrideProfile | None:
    return None


def _always(source: Any, ctx: SourceContext) -> bool:
    return True


def _config_identity(source: BaseModel, ctx: SourceContext) -> dict[str, Any]:
    return {**source.model_dump(mode="json"), "camera": ctx.camera, "crop_size": ctx.crop_size,
            "window_seconds": ctx.window_seconds, "history_windows": ctx.history_windows, **classes_identity(ctx)}


def classes_identity(ctx: SourceContext) -> dict[str, Any]:
    """The class list in a source's bootstrap identity, only where it is not the default (so that caches
    made before the class list was configurable stay valid)."""
    return {} if ctx.classes == CLASSES else {"classes": list(ctx.classes)}


@dataclass(frozen=True)
class SourceKind:
    name: str
    config_model: type[BaseModel]  # the `source:` section; its `kind` field is Literal[name]
    # A per-window source, or one that streams frames as they arrive (a live video: sources/streaming.py)
    open: Callable[[Any, SourceContext], FrameSource | StreamingFrameSource]
    # Labelled crops of `windows` (negative: the history before the deployment's window 0), at most
    # `max_crops` a window; raises SourceError when the source has no labels there.
    bootstrap_windows: Callable[[Any, SourceContext, list[int], int | None], WindowData]
    # The planner's stride -> accuracy factor measured on the source's tracks; None: no tracks to measure
    # on (the original system's profile is used).
    stride_profile: Callable[[Any, SourceContext], StrideProfile | None] = _no_profile
    # Whether the camera can score its accuracy and the bootstrap can train on its labels.
    has_ground_truth: Callable[[Any, SourceContext], bool] = _always
    # The golden model's training crops (`crops` of them, an independent draw per `salt`); None: the
    # golden model trains on the bootstrap history as well.
    golden_windows: Callable[[Any, SourceContext, int, int], WindowData] | None = None
    # What identifies the source's data for the bootstrap cache (a change retrains the initial models).
    identity: Callable[[Any, SourceContext], dict[str, Any]] = _config_identity
    max_crop_size: int | None = None  # the largest crops the source can make (checked against input_size)


_KINDS: dict[str, SourceKind] = {}
_LISTENERS: list[Callable[[], None]] = []


def register_source_kind(kind: SourceKind, *, replace: bool = False) -> SourceKind:
    """Add a kind (at import of its module). Configs validated afterwards accept it."""
    tag = kind.config_model.model_fields.get("kind")
    if tag is None or typing.get_args(tag.annotation) != (kind.name,):
        raise ValueError(f"source kind {kind.name!r}: {kind.config_model.__name__} needs a field "
                         f"`kind: Literal[{kind.name!r}]`")
    if kind.name in _KINDS and not replace and _KINDS[kind.name] is not kind:
        raise ValueError(f"source kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    _changed()
    return kind


def unregister_source_kind(name: str) -> None:
    """Remove a kind (tests that register their own)."""
    if _KINDS.pop(name, None) is not None:
        _changed()


def source_kind(name: str) -> SourceKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise SourceError(f"unknown source kind {name!r}; registered kinds: {', '.join(_KINDS)}") from None


def source_kinds() -> list[SourceKind]:
    """The registered kinds, in registration order (the built-ins first)."""
    return list(_KINDS.values())


def on_source_kinds_changed(listener: Callable[[], None]) -> None:
    """Call `listener` after every registration (the deployment config rebuilds its `source` union)."""
    _LISTENERS.append(listener)


def _changed() -> None:
    for listener in _LISTENERS:
        listener()
