"""Where a camera's frames come from: a synthetic drifting stream, or a folder of frames listed by a
manifest; and the check that the edge model's input fits the crops a synthetic stream makes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from .errors import LocatedError
from .fields import ConfigModel, ConfigPath

if TYPE_CHECKING:
    from .cameras import CameraConfig

__all__ = ["DriftConfig", "FolderSource", "Source", "SyntheticSource", "check_synthetic_crop_size"]

_SYNTHETIC_MAX_CROP = 256  # trainer/streams/synthetic.py: CameraStreamSpec.crop_size


class DriftConfig(ConfigModel):
    """How a synthetic camera's scene drifts (trainer/streams/synthetic.py): `speed` in condition cycles
    per 10 windows, `magnitude` from 0 (a static scene) to 1.5, `start_window`: where in its cycle the
    deployment's window 0 is (the bootstrap history is always the cycle's start, daytime)."""

    speed: float = Field(1.0, ge=0.0, le=100.0)
    magnitude: float = Field(1.0, ge=0.0, le=1.5)
    start_window: float = Field(0.0, ge=0.0, le=1000.0)


class SyntheticSource(ConfigModel):
    kind: Literal["synthetic"]
    seed: int = Field(0, ge=0)
    drift: DriftConfig = DriftConfig()
    fps: float = Field(10.0, gt=0.0, le=240.0)
    objects_per_frame: int = Field(3, ge=1, le=256)


class FolderSource(ConfigModel):
    """Frames listed by a manifest (written by `ekya prepare`), streamed at `fps`."""

    kind: Literal["folder"]
    manifest: ConfigPath
    fps: float = Field(10.0, gt=0.0, le=240.0)


Source = Annotated[SyntheticSource | FolderSource, Field(discriminator="kind")]


def check_synthetic_crop_size(cameras: Sequence[CameraConfig], input_size: int) -> None:
    """Raise LocatedError (at edge_model.input_size) where a synthetic camera cannot make crops that big."""
    if input_size > _SYNTHETIC_MAX_CROP:
        for index, camera in enumerate(cameras):
            if isinstance(camera.source, SyntheticSource):
                raise LocatedError(
                    ("edge_model", "input_size"),
                    f"synthetic cameras (cameras[{index}]) generate crops of at most {_SYNTHETIC_MAX_CROP} px; "
                    f"expected input_size <= {_SYNTHETIC_MAX_CROP}",
                )
