"""Object crops cut from a frame: each box squared (the edge model's input is square), with a margin,
resized to the edge model's input size."""

from __future__ import annotations

import numpy as np


def square_boxes(boxes: np.ndarray, padding: float, width: int, height: int) -> np.ndarray:
    """Each box as a square around its centre, its side the box's longer side plus `padding` of it on each
    side, moved inside the frame where it fits (a square bigger than the frame is clipped)."""
    if len(boxes) == 0:
        return np.zeros((0, 4), np.int64)
    b = boxes.astype(np.float64)
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * (1 + 2 * padding)
    side = np.minimum(np.maximum(side, 2), min(width, height))
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    x0 = np.clip(np.round(cx - side / 2), 0, width - side)
    y0 = np.clip(np.round(cy - side / 2), 0, height - side)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1).round().astype(np.int64)


def cut_crops(frame: np.ndarray, boxes: np.ndarray, size: int, padding: float) -> np.ndarray:
    """[N,size,size,3] uint8 crops of `frame` [H,W,3] at `boxes` (x0, y0, x1, y1)."""
    import cv2

    height, width = frame.shape[:2]
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(square_boxes(boxes, padding, width, height)):
        region = frame[y0:y1, x0:x1]
        shrink = region.shape[0] > size
        out[i] = cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out
