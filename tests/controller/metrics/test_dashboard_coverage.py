"""Every metric the Grafana dashboard and the alert rules read is really set: the helper that lists them
and finds the ones a /metrics text has no sample of, and the fixes for those that were never set."""

from __future__ import annotations

import time

from controller.metrics import ControllerMetrics
from controller.reconcile.events import EventLog
from controller.reconcile.records import Publication
from controller.state import CameraRecord, ControllerState
from tests.metrics_coverage import MetricsScraper, missing, missing_samples, read_metric_names, sample_names

SAMPLE = """# HELP ekya_camera_live_accuracy_ratio Accuracy.
# TYPE ekya_camera_live_accuracy_ratio gauge
ekya_camera_live_accuracy_ratio{camera="cam0"} 0.81
# HELP ekya_model_swaps_total Swaps.
# TYPE ekya_model_swaps_total counter
ekya_model_swaps_total{camera="cam0"} 2.0
# HELP ekya_window_duration_seconds Windows.
# TYPE ekya_window_duration_seconds histogram
ekya_window_duration_seconds_bucket{le="+Inf"} 1.0
ekya_window_duration_seconds_count 1.0
ekya_window_duration_seconds_sum 20.5
# HELP ekya_camera_retrained_accuracy_ratio Declared, never set: no sample.
# TYPE ekya_camera_retrained_accuracy_ratio gauge
"""


def test_the_names_read_come_from_the_dashboard_and_the_rules() -> None:
    names = read_metric_names()
    assert {"ekya_camera_retrained_accuracy_ratio", "ekya_camera_live_accuracy_ratio",  # dashboard
            "ekya_camera_inference_shed_total", "ekya_camera_inference_latency_seconds",
            "ekya_window_duration_seconds_sum", "ekya_planning_duration_seconds_bucket",
            "ekya_triton_up", "ekya_data_dir_bytes",  # rules only
            "nv_inference_request_failure"} <= names
    assert "up" not in names and "camera" not in names  # Prometheus's own; a label_values() label
    assert read_metric_names(['sum by (camera) (rate(x_total{camera=~"$camera"}[5m])) / y',
                              "label_values(z, camera)"]) == {"x_total", "y", "z"}


def test_missing_samples_on_a_metrics_text() -> None:
    assert sample_names(SAMPLE) >= {"ekya_model_swaps_total", "ekya_window_duration_seconds_sum"}
    wanted = {"ekya_camera_live_accuracy_ratio", "ekya_model_swaps_total", "ekya_window_duration_seconds_sum",
              "ekya_camera_retrained_accuracy_ratio", "ekya_trainer_failures_total", "ekya_gpu_utilization_ratio"}
    assert missing_samples(SAMPLE, wanted) == {"ekya_camera_retrained_accuracy_ratio", "ekya_trainer_failures_total"}
    assert "ekya_gpu_utilization_ratio" in missing_samples(SAMPLE, wanted, gpu=True)  # wanted on a GPU box only


def test_a_cameras_event_counters_exist_at_zero_before_any_event() -> None:
    metrics = ControllerMetrics(gpu_telemetry=False)
    text = metrics.exposition().decode()
    rare = {"ekya_model_swap_failures_total", "ekya_trainer_failures_total", "ekya_camera_inference_failures_total",
            "ekya_camera_inference_requests_total", "ekya_camera_inference_shed_total", "ekya_model_swaps_total"}
    assert missing_samples(text, rare) == rare  # before: declared, never a sample until the first event
    metrics.add_camera("cam0")
    text = metrics.exposition().decode()
    assert missing_samples(text, rare) == set()
    assert metrics.registry.get_sample_value("ekya_trainer_failures_total", {"camera": "cam0", "reason": "oom"}) == 0


def test_publishing_a_retrained_model_sets_the_retrained_accuracy_gauge() -> None:
    metrics = ControllerMetrics(gpu_telemetry=False)
    events = EventLog(ControllerState(t0=0.0, window_seconds=10.0, cameras={"cam0": CameraRecord()}), metrics)

    def retrained() -> float | None:
        return metrics.registry.get_sample_value("ekya_camera_retrained_accuracy_ratio", {"camera": "cam0"})

    events.published("cam0", 1, "retrained", Publication(accuracy=0.83, replaced_accuracy=0.7, version=2))
    assert retrained() == 0.83
    events.published("cam0", 2, "trial", Publication(accuracy=0.86, replaced_accuracy=0.83, version=3))
    assert retrained() == 0.86  # the micro-profiler's trial model is a retrained model too
    events.published("cam0", 3, "rollback", Publication(accuracy=0.8, version=4))
    assert retrained() == 0.86  # an earlier model served again: not a retrained one


def test_the_scraper_reads_a_running_endpoint_over_http_and_survives_it_going_away() -> None:
    metrics = ControllerMetrics(gpu_telemetry=False)
    metrics.add_camera("cam0")
    server = metrics.serve(0)
    scraper = MetricsScraper(every_s=0.05)
    scraper.watch(server.url)
    try:
        deadline = time.monotonic() + 10
        while scraper.scrapes == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        metrics.observe_camera("cam0", retrained_accuracy=0.9)  # set while it runs: seen at a later scrape
        before = scraper.scrapes
        while scraper.scrapes <= before + 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        server.close()
    seen = scraper.stop()  # (its last read finds the endpoint gone: not an error)
    assert {"ekya_camera_retrained_accuracy_ratio", "ekya_model_swap_failures_total"} <= seen
    assert missing(seen, {"ekya_camera_retrained_accuracy_ratio", "ekya_camera_live_accuracy_ratio"}) == {
        "ekya_camera_live_accuracy_ratio"}


def test_sample_names_are_the_names_as_exposed_even_for_a_counter_without_total() -> None:
    triton_text = ("# HELP nv_inference_request_success Number of successful inference requests\n"
                   "# TYPE nv_inference_request_success counter\n"
                   'nv_inference_request_success{model="cam0",version="1"} 3\n'
                   "# TYPE ekya_model_swaps_total counter\n"
                   'ekya_model_swaps_total{camera="cam0"} 1.0\n')
    assert sample_names(triton_text) == {"nv_inference_request_success", "ekya_model_swaps_total"}
