"""Where a camera's frames come from: one of the frame-source kinds registered in sources/registry.py
(importing `sources` registers the built-ins, synthetic and folder). The `source:` union is built from
the registry and rebuilt whenever a kind is registered, so a new kind validates without a change here;
and the check that the edge model's input fits the crops each source can make."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from sources import source_kind, source_kinds
from sources.folder import FolderSource
from sources.synthetic import DriftConfig, SyntheticSource

from .errors import LocatedError

if TYPE_CHECKING:
    from .cameras import CameraConfig

__all__ = ["DriftConfig", "FolderSource", "Source", "SyntheticSource", "check_crop_size", "source_union"]


def source_union() -> Any:
    """The `source:` field's type: a discriminated union of the registered kinds' models."""
    models = tuple(kind.config_model for kind in source_kinds())
    return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007 (a runtime tuple of models)


Source = source_union()


def check_crop_size(cameras: Sequence[CameraConfig], input_size: int) -> None:
    """Raise LocatedError (at edge_model.input_size) where a camera's source cannot make crops that big."""
    for index, camera in enumerate(cameras):
        kind = source_kind(camera.source.kind)
        if kind.max_crop_size is not None and input_size > kind.max_crop_size:
            raise LocatedError(
                ("edge_model", "input_size"),
                f"{kind.name} cameras (cameras[{index}]) generate crops of at most {kind.max_crop_size} px; "
                f"expected input_size <= {kind.max_crop_size}",
            )
