"""ONNX export for Triton: input "input" float32 [B,3,S,S] pixels in [0,1] (normalisation is inside
the model), output "logits" float32 [B,6], dynamic batch. The file is checked against PyTorch with
onnxruntime before it is moved into place, so a bad export never replaces a good model.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_write
from trainer.models import CropClassifier

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class ExportError(RuntimeError):
    """The exported model disagrees with PyTorch (or could not be exported)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    input_size: int
    max_abs_diff: float


def export_onnx(model: CropClassifier, path: str | os.PathLike[str], input_size: int | None = None, *,
                opset: int = 17, tolerance: float = 1e-3, probe_batch: int = 5, seed: int = 0) -> ExportResult:
    """Export `model` (on CPU, float32, eval mode; the caller's model is not modified). The file is kept
    only if onnxruntime's outputs on a probe batch match PyTorch's within `tolerance` (relative to the
    largest logit when that is above 1)."""
    import onnxruntime as ort

    size = int(input_size or model.meta.input_size)
    m = copy.deepcopy(model).cpu().float().eval()
    gen = torch.Generator().manual_seed(seed)
    dummy = torch.rand(2, 3, size, size, generator=gen)
    probe = torch.rand(probe_batch, 3, size, size, generator=gen)  # a different batch size than traced
    with torch.no_grad():
        expected = m(probe).numpy()
    if not np.isfinite(expected).all():
        raise ExportError("the model's outputs are not finite (diverged weights): nothing to serve")
    # Float32 rounding grows with the logits' size: a model whose running statistics lag its weights (a
    # short, unstable training run) can reach logits of 1e14 on random probes, where 1e-3 absolute
    # is below float32's resolution. Within `tolerance` of the largest logit, or absolutely below 1.
    limit = tolerance * max(1.0, float(np.abs(expected).max()))
    diff = [float("nan")]

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():  # the resize branch is a Python-level shape check: fine to trace
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(m, (dummy,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              opset_version=opset, dynamo=False)
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: probe.numpy()})[0]
        if got.shape != expected.shape:
            raise ExportError(f"ONNX output shape {got.shape} != PyTorch {expected.shape}")
        diff[0] = float(np.abs(got - expected).max())
        if not diff[0] <= limit:
            raise ExportError(f"ONNX output differs from PyTorch by {diff[0]:.2e} (> {limit:.1e})")

    out = atomic_write(path, write)
    return ExportResult(out, size, diff[0])
