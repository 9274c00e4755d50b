"""The `synthetic` source kind: the drifting generator in trainer/streams/synthetic.py (ground truth known).

The deployment's window w is the generator's window w; windows -k..-1 are the daytime history the
bootstrap trains on; the golden model trains on crops spread over each camera's whole condition cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from sources.fields import SourceConfig
from sources.registry import SourceContext, SourceKind, StrideProfile, register_source_kind
from trainer.streams.base import WindowData, concat
from trainer.streams.synthetic import CameraStreamSpec, all_conditions_data, generate_many, generate_window

MAX_CROP_SIZE = 256  # CameraStreamSpec.crop_size's bound


class DriftConfig(SourceConfig):
    """How a synthetic camera's scene drifts (trainer/streams/synthetic.py): `speed` in condition cycles
    per 10 windows, `magnitude` from 0 (a static scene) to 1.5, `start_window`: where in its cycle the
    deployment's window 0 is (the bootstrap history is always the cycle's start, daytime)."""

    speed: float = Field(1.0, ge=0.0, le=100.0)
    magnitude: float = Field(1.0, ge=0.0, le=1.5)
    start_window: float = Field(0.0, ge=0.0, le=1000.0)


class SyntheticSource(SourceConfig):
    kind: Literal["synthetic"]
    seed: int = Field(0, ge=0)
    drift: DriftConfig = DriftConfig()
    fps: float = Field(10.0, gt=0.0, le=240.0)
    objects_per_frame: int = Field(3, ge=1, le=256)


def stream_spec(source: SyntheticSource, ctx: SourceContext) -> CameraStreamSpec:
    """The generator's spec of a configured camera (the same one the bootstrap trains on)."""
    return CameraStreamSpec(
        name=ctx.camera,
        seed=source.seed,
        crop_size=ctx.crop_size,
        fps=source.fps,
        window_seconds=ctx.window_seconds,
        objects_per_frame=source.objects_per_frame,
        drift_speed=source.drift.speed,
        drift_magnitude=source.drift.magnitude,
        start_window=source.drift.start_window,
    )


@dataclass
class SyntheticFrameSource:
    spec: CameraStreamSpec

    @property
    def fps(self) -> float:
        return self.spec.fps

    def _spec(self, window_seconds: float) -> CameraStreamSpec:
        if window_seconds == self.spec.window_seconds:
            return self.spec
        return self.spec.model_copy(update={"window_seconds": window_seconds})

    def frames_per_window(self, window_seconds: float) -> int:
        return self._spec(window_seconds).frames_per_window

    def window(self, window: int, window_seconds: float) -> WindowData:
        return generate_window(self._spec(window_seconds), window)


def _open(source: SyntheticSource, ctx: SourceContext) -> SyntheticFrameSource:
    return SyntheticFrameSource(stream_spec(source, ctx))


def _bootstrap_windows(source: SyntheticSource, ctx: SourceContext, windows: list[int],
                       max_crops: int | None) -> WindowData:
    spec = stream_spec(source, ctx)
    return concat(generate_many([(spec, w, 0, max_crops) for w in windows]), camera=ctx.camera)


def _golden_windows(source: SyntheticSource, ctx: SourceContext, crops: int, salt: int) -> WindowData:
    return all_conditions_data([stream_spec(source, ctx)], crops, salt=salt)


def _stride_profile(source: SyntheticSource, ctx: SourceContext) -> StrideProfile:
    from trainer.streams.base import stride_profile

    window = generate_window(stream_spec(source, ctx), 0, render_pixels=False)  # tracks suffice
    # A perfect model: what remains is the cost of skipping frames alone.
    return sorted((int(s), float(f)) for s, f in stride_profile(window, window.labels).items())


def _identity(source: SyntheticSource, ctx: SourceContext) -> dict[str, Any]:
    return stream_spec(source, ctx).model_dump()  # what the bootstrap cache was always keyed by


SYNTHETIC = register_source_kind(SourceKind(
    name="synthetic", config_model=SyntheticSource, open=_open, bootstrap_windows=_bootstrap_windows,
    stride_profile=_stride_profile, golden_windows=_golden_windows, identity=_identity,
    max_crop_size=MAX_CROP_SIZE))
