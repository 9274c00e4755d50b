"""The user's own ONNX detector: frames letterboxed to its input, its output parsed by the configured
layout (thresholds, class filter, NMS), boxes mapped back to the frame, then the same IoU tracking and
crops as the default detector.

The camera calls the model that Triton serves for it (`<camera>.detector`, published by the controller)
over gRPC; `ekya check-source` runs the same file in-process with onnxruntime. A call that fails (Triton
restarting, a timeout) gives that frame no boxes and is counted; the next calls back off (the frames
meanwhile get no boxes either, counted too) and a fresh channel finds a restarted Triton; the camera
carries on, and the tracks age as for a frame where nothing was seen.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from common.backoff import CallBackoff
from sources.detection.background import Detections
from sources.detection.config import OnnxDetectorConfig
from sources.detection.crops import cut_crops
from sources.detection.tracker import IouTracker

log = logging.getLogger(__name__)

PAD_VALUE = 114  # the grey letterbox padding YOLO-family detectors are trained with


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the detector's square input: scaled by `scale`, then offset by the
    padding (input pixel = frame pixel * scale + pad)."""

    scale: float
    pad_x: float
    pad_y: float


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """An RGB frame [H,W,3] uint8 as the detector's input [1,3,size,size] float32 in [0, 1]: the aspect
    kept, the rest padded grey, centred."""
    import cv2

    height, width = frame.shape[:2]
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = resized
    tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return np.ascontiguousarray(tensor), Letterbox(scale, float(pad_x), float(pad_y))


def to_frame(boxes: np.ndarray, fit: Letterbox, width: int, height: int) -> np.ndarray:
    """Boxes [N,4] in the detector's input pixels as int64 boxes in the frame's pixels, clipped to it."""
    out = np.empty((len(boxes), 4), np.float64)
    out[:, [0, 2]] = (boxes[:, [0, 2]] - fit.pad_x) / fit.scale
    out[:, [1, 3]] = (boxes[:, [1, 3]] - fit.pad_y) / fit.scale
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return np.round(out).astype(np.int64)


@dataclass(frozen=True)
class RawDetections:
    boxes: np.ndarray  # [N,4] float x0, y0, x1, y1 in the detector's input pixels
    scores: np.ndarray  # [N]
    classes: np.ndarray  # [N] int64


def _centre_to_corners(rows: np.ndarray) -> np.ndarray:
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, score_threshold: float,
         iou: float) -> np.ndarray:
    """Indices kept by per-class non-maximum suppression (OpenCV)."""
    import cv2

    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    xywh = np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.astype(float).tolist(), classes.astype(int).tolist(),
                                   score_threshold, iou)
    return np.asarray(keep, np.int64).reshape(-1)


def parse_output(output: np.ndarray, config: OnnxDetectorConfig) -> RawDetections:
    """The detections in one frame's raw output, by `config.output_layout`, above the score threshold,
    of the wanted classes, after NMS for the yolo layouts."""
    array = np.asarray(output, np.float32)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]  # the batch of one
    if array.ndim != 2:
        raise ValueError(f"detector output of shape {tuple(np.shape(output))}: expected one frame's rows")
    layout = config.output_layout
    if layout == "xyxy_score_class":
        if array.shape[1] != 6:
            raise ValueError(f"detector output rows of {array.shape[1]} values: layout xyxy_score_class has 6")
        boxes, scores, classes = array[:, :4], array[:, 4], array[:, 5].round().astype(np.int64)
        needs_nms = False
    else:
        if layout == "yolo" and array.shape[0] < array.shape[1]:
            array = array.T  # YOLOv8 exports [4+C, N]: the longer axis is the candidates
        first_class = 5 if layout == "yolov5" else 4
        if array.shape[1] <= first_class:
            raise ValueError(f"detector output rows of {array.shape[1]} values: layout {layout} needs "
                             f"{first_class} box values and at least one class score")
        class_scores = array[:, first_class:]
        classes = class_scores.argmax(axis=1).astype(np.int64)
        scores = class_scores[np.arange(len(array)), classes]
        if layout == "yolov5":
            scores = scores * array[:, 4]
        boxes = _centre_to_corners(array[:, :4])
        needs_nms = True
    keep = scores >= config.score_threshold
    if config.classes is not None:
        keep &= np.isin(classes, config.classes)
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    if needs_nms:
        kept = _nms(boxes, scores, classes, config.score_threshold, config.nms_iou)
        boxes, scores, classes = boxes[kept], scores[kept], classes[kept]
    return RawDetections(boxes.astype(np.float64), scores.astype(np.float64), classes)


class DetectorRunner(Protocol):
    """Runs the detector on one input [1,3,S,S] float32; returns its (first) output."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class OnnxRuntimeRunner:
    """The detector file run in-process (check-source, or no Triton to call)."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a check beside running cameras takes one core, not all
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def close(self) -> None:
        pass


class DetectorBackingOff(RuntimeError):
    """The call was not made: the runner waits after a failure (the frame gets no detections)."""


class TritonRunner:
    """The detector as Triton serves it, over gRPC; its tensor names read from the model's metadata
    (again after a failure: the model may have been republished). A failed call makes the next ones wait
    (common/backoff.py: 0.1 s doubling to 2 s), and after two failures in a row the channel is dropped for
    a fresh one to the same URL, so that a restarted Triton is found as soon as it is back."""

    def __init__(self, url: str, model: str, timeout_s: float) -> None:
        import tritonclient.grpc as grpcclient

        self._grpc = grpcclient
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.backoff = CallBackoff()
        self.reconnects = 0
        self._client: grpcclient.InferenceServerClient | None = None
        self._names: tuple[str, str] | None = None

    def _connected(self) -> Any:
        if self._client is None:
            self._client = self._grpc.InferenceServerClient(url=self.url)
        return self._client

    def _tensor_names(self) -> tuple[str, str]:
        if self._names is None:
            metadata = self._connected().get_model_metadata(self.model, as_json=True, client_timeout=self.timeout_s)
            self._names = (metadata["inputs"][0]["name"], metadata["outputs"][0]["name"])
        return self._names

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if not self.backoff.ready(time.monotonic()):
            raise DetectorBackingOff(f"waiting {self.backoff.delay_s:g}s at most after a failed call")
        try:
            input_name, output_name = self._tensor_names()
            tensor = self._grpc.InferInput(input_name, list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            result = self._connected().infer(self.model, [tensor], client_timeout=self.timeout_s,
                                             outputs=[self._grpc.InferRequestedOutput(output_name)])
            output = result.as_numpy(output_name)
        except Exception:
            self._names = None
            if self.backoff.failed(time.monotonic()):
                self._reconnect()
            raise
        self.backoff.succeeded()
        return output

    def _reconnect(self) -> None:
        client, self._client = self._client, None
        self.reconnects += 1
        if client is not None:
            try:
                client.close()
            except Exception:  # a channel to a dead server may complain on close: it is gone either way
                log.debug("closing the channel to %s failed", self.url, exc_info=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class OnnxDetector:
    """Detections from the user's ONNX detector, tracked and cropped like the default detector's."""

    def __init__(self, config: OnnxDetectorConfig, crop_size: int, runner: DetectorRunner, where: str) -> None:
        self.config = config
        self.crop_size = crop_size
        self.runner = runner
        self.where = where  # names the model in errors
        self.tracker = IouTracker(config.iou_threshold, config.max_missed_frames)
        self.frames_seen = 0
        self.errors = 0  # frames the detector could not be run on
        self.last_error: str | None = None
        self._failing = False  # the last frame got no detections because of an error

    def boxes(self, frame: np.ndarray) -> np.ndarray:
        """The objects' boxes in an RGB frame [H,W,3] (raises what the runner or the parsing raises)."""
        height, width = frame.shape[:2]
        batch, fit = letterbox(frame, self.config.input_size)
        raw = parse_output(self.runner(batch), self.config)
        boxes = to_frame(raw.boxes, fit, width, height)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = np.flatnonzero((area > 0) & (area >= self.config.min_area))
        keep = keep[np.argsort(-raw.scores[keep], kind="stable")[: self.config.max_objects]]
        return boxes[np.sort(keep)]

    def detect(self, frame: np.ndarray) -> Detections:
        self.frames_seen += 1
        try:
            boxes = self.boxes(frame)
        except DetectorBackingOff:  # not called: the last error still says why
            self.errors += 1
            self._failing = True
            boxes = np.zeros((0, 4), np.int64)
        except Exception as exc:  # Triton down or restarting, a timeout, an output of another layout
            self.errors += 1
            self._failing = True
            self.last_error = f"detector {self.where}: {type(exc).__name__}: {exc}"
            if self.errors == 1 or self.errors % 100 == 0:
                log.warning("%s (%d frames without detections so far)", self.last_error, self.errors)
            boxes = np.zeros((0, 4), np.int64)
        else:
            if self._failing:
                log.info("detector %s answers again (%d frames without detections so far)", self.where,
                         self.errors)
                self._failing = False
        return Detections(boxes=boxes, track_ids=self.tracker.update(boxes),
                          crops=cut_crops(frame, boxes, self.crop_size, self.config.padding))

    def reset_tracks(self) -> None:
        self.tracker.reset()

    def close(self) -> None:
        self.runner.close()
