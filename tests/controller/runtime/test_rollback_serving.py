"""A rollback through a real tritonserver: the kept checkpoint of an earlier version serves again, as a
new, higher version, and the served model computes what that checkpoint computes. The automatic
rollback compares the served model (through Triton) with a kept checkpoint (torch): both measure alike."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from controller.layout import DataLayout
from controller.metrics import ControllerMetrics
from controller.reconcile.events import EventLog
from controller.reconcile.ports import SystemClock
from controller.reconcile.publish import Publisher
from controller.runtime.evaluating import TorchEvaluator
from controller.runtime.exporting import OnnxExporter
from controller.runtime.serving import TritonServing
from controller.state import CameraRecord, ControllerState
from controller.triton.spec import ModelSpec
from tests.triton_helpers import export_tiny, running_server
from trainer.models import build_model, load_model, save_model
from trainer.streams.base import WindowData
from trainer.training import predict

SIZE = 16


def _logits(checkpoint: Path, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return load_model(checkpoint).eval()(torch.from_numpy(batch)).numpy()


def _crops(checkpoint: Path, count: int = 96) -> WindowData:
    """uint8 crops labelled half by the model's own predictions, half at random (an accuracy in between)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(count, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.where(np.arange(count) % 2 == 0, predict(load_model(checkpoint), images),
                      rng.integers(0, 6, size=count))
    return WindowData(images, labels, np.arange(count), np.arange(count), np.zeros(count), camera="cam0", window=0)


def test_a_rollback_serves_the_old_checkpoint_as_a_new_version(tmp_path: Path, triton_runtime) -> None:
    layout = DataLayout(tmp_path / "data")
    first = save_model(build_model("mobilenet_v3_small", hidden=16, input_size=SIZE, seed=1), tmp_path / "m1.pt")
    state = ControllerState(t0=time.time(), window_seconds=30.0, cameras={"cam0": CameraRecord()})
    batch = np.random.default_rng(0).random((4, 3, SIZE, SIZE), dtype=np.float32)
    expected = _logits(first, batch)
    with running_server(layout.root / "model_repository", layout.triton_dir, triton_runtime) as (_, client, manager):
        serving = TritonServing(manager, client)
        serving.ensure_model(ModelSpec(name="cam0", input_dims=(3, SIZE, SIZE)))
        metrics = ControllerMetrics(gpu_telemetry=False)
        publisher = Publisher(serving, OnnxExporter(SIZE), layout, state, EventLog(state, metrics), SystemClock())
        publisher.adopt("cam0", publisher.install("cam0", first), first)
        other, _, _ = export_tiny(tmp_path / "other.onnx", seed=2)  # v2: another model (cheap to export)
        publisher.adopt("cam0", serving.publish("cam0", other), other)
        assert not np.allclose(client.infer("cam0", batch), expected, rtol=1e-3, atol=1e-4)

        rollback = publisher.republish("cam0", 1, window=0, reason="manual", accuracy=0.5, replaced_accuracy=0.9,
                                       data_window=None, window_started=state.t0, why="test")

        assert rollback.version == 3 and client.served_version("cam0") == 3
        np.testing.assert_allclose(client.infer("cam0", batch), expected, rtol=1e-3, atol=1e-4)
        crops = _crops(first)
        assert serving.accuracy("cam0", crops.images, crops.labels) == TorchEvaluator("cpu")(first, crops)
    cam = state.cameras["cam0"]
    assert (cam.serving_version, cam.serving_origin, cam.replaced_versions) == (3, 1, [])
    assert layout.checkpoint("cam0", 3).read_bytes() == first.read_bytes()
    assert metrics.registry.get_sample_value("ekya_rollbacks_total", {"camera": "cam0", "reason": "manual"}) == 1
