"""Checkpoint -> ONNX for Triton (the reconcile core's Exporter port)."""

from __future__ import annotations

from pathlib import Path


class OnnxExporter:
    def __init__(self, input_size: int) -> None:
        self.input_size = input_size

    def __call__(self, checkpoint: Path, onnx_path: Path) -> None:
        from trainer.export import export_onnx
        from trainer.models import load_model

        export_onnx(load_model(checkpoint), onnx_path, self.input_size)
