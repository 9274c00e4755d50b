"""A kept checkpoint measured with torch (the reconcile core's Evaluator port): the model a newly published
one replaced is no longer served, so an automatic rollback's comparison runs it here."""

from __future__ import annotations

from pathlib import Path

from trainer.streams.base import WindowData


class TorchEvaluator:
    def __init__(self, device: str) -> None:
        self.device = device

    def __call__(self, checkpoint: Path, data: WindowData) -> float:
        from trainer.models import load_model
        from trainer.training import evaluate

        return evaluate(load_model(checkpoint, map_location=self.device), data, self.device)
