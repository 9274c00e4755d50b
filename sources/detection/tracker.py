"""IoU tracking: a box that overlaps a live track's last box enough continues that track (so the camera's
"a track keeps its last prediction on skipped frames" holds for detected objects as for synthetic ones)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [N,4] against every box in b [M,4] (x0, y0, x1, y1)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a = a.astype(np.float64)[:, None, :]
    b = b.astype(np.float64)[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


@dataclass
class IouTracker:
    iou_threshold: float = 0.3
    max_missed_frames: int = 5
    next_id: int = 0
    _boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # live tracks' last boxes
    _ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _missed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def update(self, boxes: np.ndarray) -> np.ndarray:
        """The track id of each of this frame's boxes (new ids for new objects); one-to-one, best overlap
        first (Hungarian assignment on IoU)."""
        ids = np.full(len(boxes), -1, np.int64)
        matched_tracks = np.zeros(len(self._ids), bool)
        if len(boxes) and len(self._ids):
            iou = iou_matrix(boxes, self._boxes)
            rows, cols = linear_sum_assignment(-iou)
            keep = iou[rows, cols] >= self.iou_threshold
            ids[rows[keep]] = self._ids[cols[keep]]
            matched_tracks[cols[keep]] = True
            self._boxes[cols[keep]] = boxes[rows[keep]]
            self._missed[cols[keep]] = 0
        new = ids < 0
        ids[new] = np.arange(self.next_id, self.next_id + int(new.sum()))
        self.next_id += int(new.sum())
        self._missed[~matched_tracks] += 1
        alive = self._missed <= self.max_missed_frames
        self._boxes = np.concatenate([self._boxes[alive], boxes[new].astype(np.float64)]).reshape(-1, 4)
        self._ids = np.concatenate([self._ids[alive], ids[new]])
        self._missed = np.concatenate([self._missed[alive], np.zeros(int(new.sum()), np.int64)])
        return ids

    def reset(self) -> None:
        """Forget the live tracks (a reconnect, a file looping); ids keep growing, never reused."""
        self._boxes, self._ids, self._missed = np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, np.int64)
