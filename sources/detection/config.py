"""The `detector:` section of a video source: how objects are found in its frames."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from sources.fields import ConfigPath, SourceConfig


class BackgroundDetectorConfig(SourceConfig):
    """OpenCV MOG2 background subtraction, morphology, contours to boxes, IoU tracking: no weights needed.
    Finds what moves against a fixed camera's background (a static object fades into it after a while)."""

    kind: Literal["background"] = "background"
    history: int = Field(300, ge=2, le=10_000)  # frames the background model remembers
    var_threshold: float = Field(25.0, gt=0.0, le=1000.0)  # squared distance a pixel must move to be foreground
    process_width: int = Field(480, ge=64, le=4096)  # frames are shrunk to this width for subtraction (speed)
    min_area: int = Field(150, ge=1)  # a box's least area, in the frame's own pixels
    merge_gap: float = Field(0.02, ge=0.0, le=0.5)  # boxes closer than this fraction of the width are one object
    max_objects: int = Field(32, ge=1, le=256)  # the largest boxes of a frame are kept
    # foreground over this fraction of the frame is a lighting change or a shaken camera, not objects: that
    # frame reports no boxes (tracks keep their last box); a single box larger than this is dropped too
    max_area_fraction: float = Field(0.5, gt=0.0, le=1.0)
    padding: float = Field(0.1, ge=0.0, le=1.0)  # margin around a box, a fraction of its longer side
    iou_threshold: float = Field(0.3, gt=0.0, lt=1.0)  # a box continues a track above this overlap
    max_missed_frames: int = Field(5, ge=0, le=1000)  # a track unseen this long ends
    warmup_frames: int = Field(5, ge=0, le=10_000)  # the background is learned before boxes are reported


class OnnxDetectorConfig(SourceConfig):
    """The user's own ONNX detector, served by Triton (not yet supported: the shape is here so that configs
    can be written; validation says so)."""

    kind: Literal["onnx"]
    model: ConfigPath  # the ONNX file
    input_size: int = Field(640, ge=32, le=4096)
    score_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    output_layout: Literal["xyxy_score_class", "yolo"] = "xyxy_score_class"

    @model_validator(mode="after")
    def _not_yet(self) -> OnnxDetectorConfig:
        raise ValueError("an ONNX detector (detector.kind: onnx) is not yet supported; use the default "
                         "`detector: {kind: background}` (no weights needed)")


def _default_kind(value: Any) -> Any:
    """`kind` may be left out: the background detector."""
    if isinstance(value, dict) and "kind" not in value:
        return {**value, "kind": "background"}
    return value


DetectorConfig = Annotated[BackgroundDetectorConfig | OnnxDetectorConfig, Field(discriminator="kind"),
                           BeforeValidator(_default_kind)]
