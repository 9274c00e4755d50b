"""Golden-model labelling and serving-model measurement, both through Triton.

The golden model is served like any camera model (model name "golden"), so labelling uses the same
real inference path as the cameras and competes for the same resources.
"""

from __future__ import annotations

import numpy as np

from controller.triton.client import TritonClient
from protocol.model_input import to_model_input

GOLDEN_MODEL = "golden"


def predict_through_triton(client: TritonClient, model: str, images: np.ndarray, batch_size: int = 32,
                           in_flight: int = 1) -> np.ndarray:
    """Class predictions for uint8 NHWC crops, in batches; `in_flight` batches at a time (more than one
    overlaps one request's conversion and transfer with another's inference: large crops, a GPU)."""
    out = np.empty(len(images), dtype=np.int64)

    def run(start: int) -> None:
        logits = client.infer(model, to_model_input(images[start:start + batch_size]))
        out[start:start + batch_size] = np.argmax(logits, axis=1)

    starts = range(0, len(images), batch_size)
    if in_flight <= 1 or len(starts) <= 1:
        for start in starts:
            run(start)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(in_flight, len(starts))) as pool:
            list(pool.map(run, starts))  # re-raises the first failure
    return out


def golden_labels(client: TritonClient, images: np.ndarray, batch_size: int = 32, in_flight: int = 1) -> np.ndarray:
    return predict_through_triton(client, GOLDEN_MODEL, images, batch_size, in_flight)


def accuracy_through_triton(client: TritonClient, model: str, images: np.ndarray, labels: np.ndarray,
                            in_flight: int = 1) -> float | None:
    mask = labels >= 0
    if not mask.any():
        return None
    predictions = predict_through_triton(client, model, images[mask], in_flight=in_flight)
    return float((predictions == labels[mask]).mean())
