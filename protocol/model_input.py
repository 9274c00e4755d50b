"""The tensors a camera model takes: what a camera sends and what the controller labels and measures with."""

from __future__ import annotations

import numpy as np


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC crops -> float32 NCHW in [0, 1]; the exported model normalises inside."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
