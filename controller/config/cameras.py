"""A camera of the deployment: its name (which becomes its Triton model's name) and its frame source."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from sources.detection.config import DETECTOR_SUFFIX, OnnxDetectorConfig, detector_model_name
from sources.registry import on_source_kinds_changed

from .fields import ConfigModel, Fraction
from .sources import Source, source_union

__all__ = ["CAMERA_NAME_PATTERN", "RESERVED_CAMERA_NAMES", "CameraConfig"]

# Triton model names become directory names and URL path segments: keep them to a safe subset.
CAMERA_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
RESERVED_CAMERA_NAMES = frozenset({"golden"})  # the golden model is served under this Triton name
# "<camera>.onnx" is the ONNX model behind a camera whose capture wraps it (controller/triton/spec.py)
RESERVED_CAMERA_SUFFIX = ".onnx"
MODEL_NAME_MAX = 63


class CameraConfig(ConfigModel):
    name: Annotated[str, Field(pattern=CAMERA_NAME_PATTERN)]
    source: Source
    # fraction of the camera's requests its Triton model captures for labelling (default: the deployment's)
    label_sampling_rate: Fraction | None = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_CAMERA_NAMES:
            raise PydanticCustomError(
                "reserved_name",
                "the name {name!r} is reserved (the golden model is served under it)",
                {"name": name},
            )
        if name.endswith(RESERVED_CAMERA_SUFFIX):
            raise PydanticCustomError(
                "reserved_name",
                "the name '{name}' ends in '{suffix}', which is reserved for the ONNX model behind a capturing "
                "camera's model",
                {"name": name, "suffix": RESERVED_CAMERA_SUFFIX},
            )
        if name.endswith(DETECTOR_SUFFIX):
            raise PydanticCustomError(
                "reserved_name",
                "the name '{name}' ends in '{suffix}', which is reserved for a camera's ONNX detector model",
                {"name": name, "suffix": DETECTOR_SUFFIX},
            )
        return name

    @model_validator(mode="after")
    def _detector_name_fits(self) -> CameraConfig:
        detector = getattr(self.source, "detector", None)
        if isinstance(detector, OnnxDetectorConfig) and len(detector_model_name(self.name)) > MODEL_NAME_MAX:
            raise ValueError(f"camera {self.name!r}: with an ONNX detector (served as "
                             f"{detector_model_name(self.name)!r}) the name may have at most "
                             f"{MODEL_NAME_MAX - len(DETECTOR_SUFFIX)} characters")
        return self


def _rebuild_source_union() -> None:
    """A kind was registered: CameraConfig's `source` accepts it (models embedding CameraConfig rebuild
    on the same notice, registered after this one)."""
    CameraConfig.model_fields["source"] = FieldInfo.from_annotation(source_union())
    CameraConfig.model_rebuild(force=True)


on_source_kinds_changed(_rebuild_source_union)
