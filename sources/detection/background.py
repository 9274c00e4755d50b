"""The default detector: what moves against a fixed camera's background, found without any weights.

OpenCV's MOG2 background subtractor on a shrunken copy of the frame (shadows it marks are not objects),
an opening to drop speckle and a closing to join an object's parts, external contours to boxes (scaled
back to the frame), the boxes below `min_area` dropped and the largest `max_objects` kept; then IoU
tracking and crops at the edge model's input size. A frame whose foreground covers more than
`max_area_fraction` of it (the light changed, the camera moved) has no boxes while the background relearns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sources.detection.config import BackgroundDetectorConfig
from sources.detection.crops import cut_crops
from sources.detection.tracker import IouTracker

FOREGROUND = 200  # MOG2 marks foreground 255 and shadows 127


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # [N,4] int64 x0, y0, x1, y1
    track_ids: np.ndarray  # [N] int64
    crops: np.ndarray  # [N,S,S,3] uint8


def merge_near(boxes: np.ndarray, gap: float) -> np.ndarray:
    """Boxes closer than `gap` pixels merged into one (repeatedly): an object whose colours partly match
    the background falls apart into pieces that lie side by side."""
    boxes = [list(b) for b in boxes]
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] - gap <= b[2] and b[0] - gap <= a[2] and a[1] - gap <= b[3] and b[1] - gap <= a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return np.array(boxes, np.float64).reshape(-1, 4)


class BackgroundDetector:
    def __init__(self, config: BackgroundDetectorConfig, crop_size: int) -> None:
        import cv2

        self.config = config
        self.crop_size = crop_size
        self._subtractor = cv2.createBackgroundSubtractorMOG2(
            history=config.history, varThreshold=config.var_threshold, detectShadows=True)
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
        self.tracker = IouTracker(config.iou_threshold, config.max_missed_frames)
        self.frames_seen = 0

    def boxes(self, frame: np.ndarray) -> np.ndarray:
        """The moving objects' boxes in an RGB frame [H,W,3] (updates the background model)."""
        import cv2

        height, width = frame.shape[:2]
        scale = min(1.0, self.config.process_width / width)
        small = frame if scale == 1.0 else cv2.resize(frame, (max(1, round(width * scale)),
                                                              max(1, round(height * scale))),
                                                      interpolation=cv2.INTER_AREA)
        mask = self._subtractor.apply(small)
        self.frames_seen += 1
        if self.frames_seen <= self.config.warmup_frames:
            return np.zeros((0, 4), np.int64)
        _, mask = cv2.threshold(mask, FOREGROUND, 255, cv2.THRESH_BINARY)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close)
        if cv2.countNonZero(mask) > self.config.max_area_fraction * mask.size:
            return np.zeros((0, 4), np.int64)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            return np.zeros((0, 4), np.int64)
        rects = np.array([cv2.boundingRect(c) for c in contours], np.float64)  # x, y, w, h
        boxes = np.stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]], axis=1)
        boxes = np.round(merge_near(boxes, self.config.merge_gap * small.shape[1]) / scale).astype(np.int64)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = np.flatnonzero((area >= self.config.min_area)
                              & (area <= self.config.max_area_fraction * width * height))
        keep = keep[np.argsort(-area[keep], kind="stable")[: self.config.max_objects]]
        return boxes[np.sort(keep)]

    def detect(self, frame: np.ndarray) -> Detections:
        boxes = self.boxes(frame)
        return Detections(boxes=boxes, track_ids=self.tracker.update(boxes),
                          crops=cut_crops(frame, boxes, self.crop_size, self.config.padding))

    def reset_tracks(self) -> None:
        self.tracker.reset()
