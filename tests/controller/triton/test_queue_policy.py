"""A camera model's bounded queue against the real embedded Triton: a flood is shed, not queued without
bound, and the shed requests reach the per-camera figures read from Triton's own metrics."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from controller.metrics import ControllerMetrics
from controller.triton.metrics_reader import TritonFigures
from controller.triton.spec import ModelSpec, render_config
from tests.triton_helpers import INPUT_DIMS, export_tiny, running_server

QUEUE = 40
FLOOD = 300


def test_rendering_of_the_bounded_queue() -> None:
    text = render_config(ModelSpec(name="cam0", max_queue_size=16, queue_timeout_us=250_000))
    assert "default_queue_policy {" in text and "timeout_action: REJECT" in text
    assert "default_timeout_microseconds: 250000" in text and "max_queue_size: 16" in text
    assert "default_queue_policy" not in render_config(ModelSpec(name="golden"))  # unbounded unless asked
    assert "dynamic_batching" not in render_config(ModelSpec(name="cam0", dynamic_batching=False, max_queue_size=4))


def flood(grpc_url: str, model: str, batch: np.ndarray, count: int) -> list[Exception | None]:
    """`count` requests sent at once by a plain tritonclient (any gRPC client is a camera)."""
    client = grpcclient.InferenceServerClient(grpc_url)
    results: list[Exception | None] = []
    done = threading.Event()

    def answered(result, error) -> None:
        results.append(error)
        if len(results) == count:
            done.set()

    try:
        for _ in range(count):
            request = grpcclient.InferInput("input", list(batch.shape), "FP32")
            request.set_data_from_numpy(batch)
            client.async_infer(model, [request], answered, client_timeout=60)
        assert done.wait(90), f"{count - len(results)} requests never answered"
    finally:
        client.close()
    return results


def test_a_flood_is_shed_and_counted_per_camera(tmp_path: Path, triton_runtime) -> None:
    path, probe, _ = export_tiny(tmp_path / "m.onnx", 1)
    # one crop per execution and a 2-ms queue: a burst of 300 overflows both the queue and the timeout
    spec = ModelSpec(name="cam0", input_dims=INPUT_DIMS, max_batch_size=1, max_queue_delay_us=0,
                     max_queue_size=QUEUE, queue_timeout_us=2_000)
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (server, client, serving):
        serving.deploy(spec, path)
        metrics = ControllerMetrics(gpu_telemetry=False)
        figures = TritonFigures(server.info.metrics_url, ["cam0"], metrics)
        assert figures.poll() is None  # the baseline
        started = time.monotonic()
        results = flood(server.info.grpc_url, "cam0", probe[:1], FLOOD)
        elapsed = time.monotonic() - started
        errors = [str(e) for e in results if e is not None]
        timed_out = sum("Request timeout expired" in e for e in errors)
        refused = sum("Exceeds maximum queue size" in e for e in errors)
        succeeded = FLOOD - len(errors)
        assert timed_out + refused == len(errors), set(errors) - {""}  # no other kind of error
        assert refused > 0 and timed_out > 0 and succeeded > 0  # both bounds hit; the first ones served
        assert elapsed < 30  # rejected at once, not served one by one
        increments = figures.poll()
        assert increments is not None
        # Triton counts the timed-out ones as REJECTED; the refused ones it counts nowhere
        assert increments["cam0"].shed == timed_out
        assert increments["cam0"].successes == succeeded and increments["cam0"].failures == 0
        sample = metrics.registry.get_sample_value
        assert sample("ekya_camera_inference_shed_total", {"camera": "cam0"}) == timed_out
        assert sample("ekya_camera_inference_requests_total", {"camera": "cam0"}) == succeeded + timed_out
        assert sample("ekya_camera_inference_failures_total", {"camera": "cam0"}) == 0
        assert 0 < sample("ekya_camera_inference_latency_seconds", {"camera": "cam0"}) < 5
        # the model keeps serving once the flood is over
        assert client.infer("cam0", probe[:1]).shape == (1, 6)
