"""Golden-model labelling and serving-model measurement, both through Triton.

The golden model is served like any camera model (model name "golden"), so labelling uses the same
real inference path as the cameras and competes for the same resources.
"""

from __future__ import annotations

import numpy as np

from controller.camera import to_model_input
from controller.triton.client import TritonClient

GOLDEN_MODEL = "golden"


def predict_through_triton(client: TritonClient, model: str, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class predictions for uint8 NHWC crops, in batches."""
    out = np.empty(len(images), dtype=np.int64)
    for start in range(0, len(images), batch_size):
        logits = client.infer(model, to_model_input(images[start:start + batch_size]))
        out[start:start + batch_size] = np.argmax(logits, axis=1)
    return out


def golden_labels(client: TritonClient, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return predict_through_triton(client, GOLDEN_MODEL, images, batch_size)


def accuracy_through_triton(client: TritonClient, model: str, images: np.ndarray, labels: np.ndarray) -> float | None:
    mask = labels >= 0
    if not mask.any():
        return None
    predictions = predict_through_triton(client, model, images[mask])
    return float((predictions == labels[mask]).mean())
