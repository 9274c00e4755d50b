"""Per-camera figures from Triton's metrics text: parsing, increments, restarts, swaps, Triton away."""

from __future__ import annotations

import logging

import pytest

from controller.metrics import ControllerMetrics
from controller.triton.metrics_reader import ServingCounts, TritonFigures, parse_triton_metrics
from controller.triton.server import free_port


def triton_text(model: str = "cam0", version: str = "1", *, success: int = 0, backend: int = 0, rejected: int = 0,
                request_us: int = 0, queue_us: int = 0, extra: str = "") -> str:
    """Triton 2.51's exposition of one model version, as its metrics port writes it."""
    return f"""# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{{model="{model}",version="{version}"}} {success}
nv_inference_request_success{{model="golden",version="1"}} 1000
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{{model="{model}",reason="OTHER",version="{version}"}} 0
nv_inference_request_failure{{model="{model}",reason="BACKEND",version="{version}"}} {backend}
nv_inference_request_failure{{model="{model}",reason="CANCELED",version="{version}"}} 0
nv_inference_request_failure{{model="{model}",reason="REJECTED",version="{version}"}} {rejected}
# HELP nv_inference_request_duration_us Cumulative inference request duration in microseconds
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{{model="{model}",version="{version}"}} {request_us}
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{{model="{model}",version="{version}"}} {queue_us}
# HELP nv_inference_pending_request_count Instantaneous number of pending requests
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{{model="{model}",version="{version}"}} 3
{extra}"""


class Texts:
    """What Triton answers next (a real fetch function, fed by the test)."""

    def __init__(self) -> None:
        self.text = ""

    def __call__(self, url: str) -> str:
        return self.text


def value(metrics: ControllerMetrics, name: str, camera: str = "cam0") -> float | None:
    return metrics.registry.get_sample_value(name, {"camera": camera})


def test_parse_splits_shed_from_failures_and_sums_per_version() -> None:
    series = parse_triton_metrics(triton_text(success=10, backend=2, rejected=5, request_us=40_000, queue_us=9_000))
    assert series[("cam0", "1")] == ServingCounts(successes=10, failures=2, shed=5, request_us=40_000, queue_us=9_000)
    assert series[("cam0", "1")].requests == 17
    assert series[("golden", "1")].successes == 1000


def test_first_read_is_the_baseline_then_increments_feed_the_counters() -> None:
    texts, metrics = Texts(), ControllerMetrics(gpu_telemetry=False)
    figures = TritonFigures("http://triton/metrics", ["cam0", "cam1"], metrics, fetch=texts)
    # every camera's series exist at zero before any read (the dashboard shows 0, not "no data")
    assert value(metrics, "ekya_camera_inference_requests_total", "cam1") == 0.0
    texts.text = triton_text(success=100, rejected=7, request_us=500_000)
    assert figures.poll() is None  # Triton's history before this controller: not counted
    assert value(metrics, "ekya_camera_inference_requests_total") == 0.0
    texts.text = triton_text(success=110, backend=1, rejected=9, request_us=530_000, queue_us=10_000)
    increments = figures.poll()
    assert increments is not None and increments["cam0"] == ServingCounts(10, 1, 2, 30_000, 10_000)
    assert value(metrics, "ekya_camera_inference_requests_total") == 13.0
    assert value(metrics, "ekya_camera_inference_successes_total") == 10.0
    assert value(metrics, "ekya_camera_inference_failures_total") == 1.0
    assert value(metrics, "ekya_camera_inference_shed_total") == 2.0
    assert value(metrics, "ekya_camera_inference_latency_seconds") == pytest.approx(0.003)
    assert value(metrics, "ekya_camera_inference_queue_seconds") == pytest.approx(0.001)
    assert value(metrics, "ekya_camera_inference_requests_total", "cam1") == 0.0  # no model reported


def test_a_restarted_triton_counts_from_zero_and_a_swap_counts_the_new_version() -> None:
    texts, metrics = Texts(), ControllerMetrics(gpu_telemetry=False)
    figures = TritonFigures("http://triton/metrics", ["cam0"], metrics, fetch=texts)
    texts.text = triton_text(success=500, request_us=1_000_000)
    figures.poll()
    texts.text = triton_text(success=4, request_us=8_000)  # restarted: its counters began again
    figures.poll()
    assert value(metrics, "ekya_camera_inference_successes_total") == 4.0
    # a hot swap: version 1's series gone, version 2's new (counted from zero)
    texts.text = triton_text(version="2", success=6, request_us=6_000)
    figures.poll()
    assert value(metrics, "ekya_camera_inference_successes_total") == 10.0
    texts.text = triton_text(version="2", success=6, request_us=6_000)  # idle: nothing new
    figures.poll()
    assert value(metrics, "ekya_camera_inference_successes_total") == 10.0
    assert value(metrics, "ekya_camera_inference_latency_seconds") == pytest.approx(0.001)  # the last one seen


def test_triton_away_or_garbage_never_raises_and_keeps_the_baseline(caplog) -> None:
    metrics = ControllerMetrics(gpu_telemetry=False)
    url = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    figures = TritonFigures(url, ["cam0"], metrics)
    with caplog.at_level(logging.WARNING, logger="controller"):
        assert figures.poll() is None
        assert figures.poll() is None
    assert sum("unreadable" in r.getMessage() for r in caplog.records) == 1  # once per outage
    texts = Texts()
    figures = TritonFigures("http://triton/metrics", ["cam0"], metrics, fetch=texts)
    texts.text = triton_text(success=5)
    figures.poll()
    texts.text = "this is { not the exposition format"
    assert figures.poll() is None
    texts.text = triton_text(success=8)
    figures.poll()
    assert value(metrics, "ekya_camera_inference_successes_total") == 3.0
