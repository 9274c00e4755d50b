"""The `detector:` section of a video source: how objects are found in its frames."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

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
    """The user's own ONNX detector, served by the deployment's Triton as the model
    `<camera>.detector` (the controller publishes it at start-up) and called by the camera over gRPC;
    `ekya check-source` runs the same file in-process (onnxruntime), so a source can be checked before
    anything is deployed. Frames are letterboxed to `input_size` (aspect kept, grey padding), RGB float32
    in [0, 1], NCHW; the boxes come back in the frame's pixels."""

    kind: Literal["onnx"]
    model: ConfigPath  # the ONNX file: one float32 input [batch or 1, 3, input_size, input_size]
    input_size: int = Field(640, ge=32, le=4096)
    score_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # xyxy_score_class: [N,6] or [1,N,6] rows x0, y0, x1, y1, score, class in the input's pixels (NMS
    # already done by the model). yolo: YOLOv8-style [1, 4+C, N] (or [1, N, 4+C]) cx, cy, w, h then one
    # score per class. yolov5: [1, N, 5+C] cx, cy, w, h, objectness then class scores. Both yolo layouts
    # get NMS here.
    output_layout: Literal["xyxy_score_class", "yolo", "yolov5"] = "xyxy_score_class"
    nms_iou: float = Field(0.45, gt=0.0, lt=1.0)  # yolo layouts: overlapping boxes above this are one
    classes: list[int] | None = None  # keep only these detector classes (None: all)
    min_area: int = Field(0, ge=0)  # a box's least area, in the frame's own pixels
    max_objects: int = Field(32, ge=1, le=256)  # the highest-scoring boxes of a frame are kept
    padding: float = Field(0.1, ge=0.0, le=1.0)  # margin around a box, a fraction of its longer side
    iou_threshold: float = Field(0.3, gt=0.0, lt=1.0)  # a box continues a track above this overlap
    max_missed_frames: int = Field(5, ge=0, le=1000)  # a track unseen this long ends
    request_timeout_s: float = Field(2.0, gt=0.0, le=60.0)  # one frame's call to Triton


DETECTOR_SUFFIX = ".detector"


def detector_model_name(camera: str) -> str:
    """The Triton model that serves a camera's ONNX detector: known to the controller (which publishes it)
    and to the camera (which calls it) from the config alone."""
    return camera + DETECTOR_SUFFIX


def _default_kind(value: Any) -> Any:
    """`kind` may be left out: the background detector."""
    if isinstance(value, dict) and "kind" not in value:
        return {**value, "kind": "background"}
    return value


DetectorConfig = Annotated[BackgroundDetectorConfig | OnnxDetectorConfig, Field(discriminator="kind"),
                           BeforeValidator(_default_kind)]
