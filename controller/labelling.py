"""Golden-model labelling and serving-model measurement, both through Triton.

The golden model is served like any camera model (model name "golden"), so labelling uses the same
real inference path as the cameras and competes for the same resources. A user's golden model (an
ONNX file) is sent what it was made for (`GoldenInput`: its input size, normalisation and layout), and
its classes are mapped to the deployment's (one not mapped labels nothing: -1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from controller.triton.client import TritonClient
from protocol.model_input import to_model_input

GOLDEN_MODEL = "golden"


@dataclass(frozen=True)
class GoldenInput:
    """How crops become a user golden model's input, and its predictions the deployment's labels."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str  # "nchw" | "nhwc"
    label_of: tuple[int, ...]  # golden class -> deployment class index, -1: none
    input_name: str = "input"  # the file's own tensor names (it is served as given)
    output_name: str = "logits"

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 NHWC crops -> float32 at input_size, (x / 255 - mean) / std, in the model's layout."""
        from PIL import Image

        s = self.input_size
        if images.shape[1:3] != (s, s):
            images = np.stack([np.asarray(Image.fromarray(crop).resize((s, s), Image.BILINEAR)) for crop in images])
        x = images.astype(np.float32) / np.float32(255.0)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x if self.layout == "nhwc" else x.transpose(0, 3, 1, 2))

    def labels(self, predicted: np.ndarray) -> np.ndarray:
        return np.asarray(self.label_of, dtype=np.int64)[predicted]


def predict_through_triton(client: TritonClient, model: str, images: np.ndarray, batch_size: int = 32,
                           in_flight: int = 1, prepare: Callable[[np.ndarray], np.ndarray] = to_model_input,
                           tensors: tuple[str, str] = ("input", "logits")) -> np.ndarray:
    """Class predictions for uint8 NHWC crops, in batches; `in_flight` batches at a time (more than one
    overlaps one request's conversion and transfer with another's inference: large crops, a GPU)."""
    out = np.empty(len(images), dtype=np.int64)

    def run(start: int) -> None:
        logits = client.infer(model, prepare(images[start:start + batch_size]), input_name=tensors[0],
                              output_name=tensors[1])
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


def golden_labels(client: TritonClient, images: np.ndarray, batch_size: int = 32, in_flight: int = 1,
                  golden: GoldenInput | None = None) -> np.ndarray:
    """The deployment's class per crop by the golden model (-1 where a user golden model's class maps to
    none); `golden` None: the bootstrapped golden model, which takes what the cameras' models take."""
    if golden is None:
        return predict_through_triton(client, GOLDEN_MODEL, images, batch_size, in_flight)
    if len(images) == 0:
        return np.empty(0, dtype=np.int64)
    return golden.labels(predict_through_triton(client, GOLDEN_MODEL, images, batch_size, in_flight, golden.prepare,
                                                (golden.input_name, golden.output_name)))


def accuracy_through_triton(client: TritonClient, model: str, images: np.ndarray, labels: np.ndarray,
                            in_flight: int = 1) -> float | None:
    mask = labels >= 0
    if not mask.any():
        return None
    predictions = predict_through_triton(client, model, images[mask], in_flight=in_flight)
    return float((predictions == labels[mask]).mean())
