"""controller/metrics/: scraped over real HTTP from a loopback port and parsed like Prometheus does."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller import gpu
from controller.metrics import GPU_SERIES, ControllerMetrics, MetricsServer, exported_series_names
from tests.promql import referenced_metric_names

NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@pytest.fixture
def metrics() -> ControllerMetrics:
    return ControllerMetrics()


@pytest.fixture
def server(metrics: ControllerMetrics) -> Iterator[MetricsServer]:
    srv = metrics.serve(0, "127.0.0.1")  # port 0: a free port chosen by the OS
    try:
        yield srv
    finally:
        srv.close()


def scrape(srv: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(srv.url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_served_on_loopback_and_scraped(metrics: ControllerMetrics, server: MetricsServer) -> None:
    assert server.address == "127.0.0.1" and server.port > 0
    metrics.observe_camera(
        "cam0",
        live_accuracy=0.81,
        retrained_accuracy=0.86,
        serving_version=3,
        inference_share=0.3,
        training_share=0.2,
        instances=2,
        frame_stride=3,
    )
    metrics.observe_camera("cam1", live_accuracy=0.5)  # only what is given is set
    s = scrape(server)
    assert value(s, "ekya_camera_live_accuracy_ratio", camera="cam0") == pytest.approx(0.81)
    assert value(s, "ekya_camera_retrained_accuracy_ratio", camera="cam0") == pytest.approx(0.86)
    assert value(s, "ekya_camera_serving_version", camera="cam0") == 3
    assert value(s, "ekya_camera_inference_share_ratio", camera="cam0") == pytest.approx(0.3)
    assert value(s, "ekya_camera_training_share_ratio", camera="cam0") == pytest.approx(0.2)
    assert value(s, "ekya_camera_triton_instances", camera="cam0") == 2
    assert value(s, "ekya_camera_frame_stride", camera="cam0") == 3
    assert value(s, "ekya_camera_live_accuracy_ratio", camera="cam1") == pytest.approx(0.5)
    assert ("ekya_camera_frame_stride", (("camera", "cam1"),)) not in s


def test_counters_and_histograms(metrics: ControllerMetrics, server: MetricsServer) -> None:
    metrics.record_swap("cam0", ok=True)
    metrics.record_swap("cam0", ok=True)
    metrics.record_swap("cam0", ok=False)
    metrics.record_trainer_failure("cam1", "oom")
    metrics.record_trainer_failure("cam1", "segfault: core dumped at 0x7f")  # free text -> "other"
    metrics.record_window(31.5)
    metrics.record_window(29.0)
    metrics.record_planning(0.4)
    metrics.record_step(4.2)
    s = scrape(server)
    assert value(s, "ekya_model_swaps_total", camera="cam0") == 2
    assert value(s, "ekya_model_swap_failures_total", camera="cam0") == 1
    assert value(s, "ekya_trainer_failures_total", camera="cam1", reason="oom") == 1
    assert value(s, "ekya_trainer_failures_total", camera="cam1", reason="other") == 1
    assert value(s, "ekya_windows_completed_total") == 2
    assert value(s, "ekya_window_duration_seconds_count") == 2
    assert value(s, "ekya_window_duration_seconds_sum") == pytest.approx(60.5)
    assert value(s, "ekya_window_duration_seconds_bucket", le="30.0") == 1
    assert value(s, "ekya_window_step_duration_seconds_sum") == pytest.approx(4.2)
    assert value(s, "ekya_window_step_duration_seconds_count") == 1
    assert value(s, "ekya_planning_duration_seconds_bucket", le="0.5") == 1
    assert value(s, "ekya_planning_duration_seconds_bucket", le="0.25") == 0
    assert not any(name.endswith("_created") for name, _ in s)  # no doubled series


def test_window_length_marks_the_loop_and_counts_as_the_first_tick(metrics: ControllerMetrics) -> None:
    assert b"ekya_last_tick_timestamp_seconds 0.0" in metrics.exposition()  # not a loop process yet
    before = time.time()
    metrics.set_window_length(30)
    tick = metrics.registry.get_sample_value("ekya_last_tick_timestamp_seconds")
    assert tick is not None and before <= tick <= time.time()
    metrics.tick(timestamp=5.0)
    metrics.set_window_length(60)  # a later change does not fake a tick
    assert metrics.registry.get_sample_value("ekya_last_tick_timestamp_seconds") == 5.0
    with pytest.raises(ValueError):
        metrics.set_window_length(0)


def test_controller_tick_window_and_profiler(metrics: ControllerMetrics, server: MetricsServer) -> None:
    metrics.set_window_length(200)
    metrics.tick(window=7, timestamp=1_700_000_000.0)
    metrics.observe_profile("cam0", predicted=0.80, actual=0.74)
    s = scrape(server)
    assert value(s, "ekya_window_length_seconds") == 200
    assert value(s, "ekya_current_window") == 7
    assert value(s, "ekya_last_tick_timestamp_seconds") == 1_700_000_000.0
    assert value(s, "ekya_microprofiler_predicted_accuracy_ratio", camera="cam0") == pytest.approx(0.80)
    assert value(s, "ekya_microprofiler_actual_accuracy_ratio", camera="cam0") == pytest.approx(0.74)
    assert value(s, "ekya_microprofiler_absolute_error_ratio_bucket", le="0.05") == 0
    assert value(s, "ekya_microprofiler_absolute_error_ratio_bucket", le="0.1") == 1


def test_retraining_config_is_an_info_metric_that_replaces_the_old_config(
    metrics: ControllerMetrics, server: MetricsServer
) -> None:
    metrics.set_retraining_config("cam0", "all-s0.5-e15", {"epochs": 15, "layers": "all", "batch-size": 64})
    metrics.set_retraining_config("cam0", "last-s1-e5", {"epochs": 5, "layers": "last"})
    metrics.set_retraining_config("cam1", None)
    s = scrape(server)
    configs = {labels: v for (name, labels), v in s.items() if name == "ekya_camera_retraining_config_info"}
    assert configs == {
        (("camera", "cam0"), ("config", "last-s1-e5"), ("epochs", "5"), ("layers", "last")): 1.0,
        (("camera", "cam1"), ("config", "none")): 1.0,
    }


def test_remove_camera_drops_its_series(metrics: ControllerMetrics, server: MetricsServer) -> None:
    metrics.observe_camera("gone", live_accuracy=0.9, instances=1)
    metrics.record_swap("gone", ok=True)
    metrics.record_trainer_failure("gone", "oom")
    metrics.observe_camera("kept", live_accuracy=0.7)
    metrics.remove_camera("gone")
    s = scrape(server)
    assert not any(dict(labels).get("camera") == "gone" for _, labels in s)
    assert value(s, "ekya_camera_live_accuracy_ratio", camera="kept") == pytest.approx(0.7)


def test_each_instance_has_its_own_registry() -> None:
    a, b = ControllerMetrics(), ControllerMetrics()
    a.record_swap("cam0", ok=True)
    assert b'ekya_model_swaps_total{camera="cam0"} 1.0' in a.exposition()
    assert b'camera="cam0"' not in b.exposition()


def test_two_servers_on_different_ports() -> None:
    a, b = ControllerMetrics(), ControllerMetrics()
    a.observe_camera("x", live_accuracy=0.1)
    b.observe_camera("y", live_accuracy=0.2)
    sa, sb = a.serve(0), b.serve(0)
    try:
        assert sa.port != sb.port
        assert value(scrape(sa), "ekya_camera_live_accuracy_ratio", camera="x") == pytest.approx(0.1)
        assert ("ekya_camera_live_accuracy_ratio", (("camera", "x"),)) not in scrape(sb)
    finally:
        sa.close()
        sb.close()


def test_names_follow_prometheus_conventions(metrics: ControllerMetrics) -> None:
    names = exported_series_names(metrics.registry)
    assert names >= set(GPU_SERIES)
    for name in names:
        assert NAME_RE.match(name), name
        assert name.startswith("ekya_"), name
    for family in metrics.registry.collect():
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client adds _total to the sample
        if family.type == "gauge" and (
            "accuracy" in family.name or "share" in family.name or "utilization" in family.name
        ):
            assert family.name.endswith("_ratio"), family.name
        if "duration" in family.name or "timestamp" in family.name or "length" in family.name:
            assert family.name.endswith("_seconds"), family.name
        assert family.documentation, family.name


@pytest.mark.skipif(gpu.nvml_available(), reason="checks the no-GPU behaviour")
def test_gpu_telemetry_is_skipped_cleanly_without_a_gpu(
    metrics: ControllerMetrics, server: MetricsServer
) -> None:
    s = scrape(server)
    assert not any(name.startswith("ekya_gpu_") for name, _ in s)
    assert (
        value(s, "ekya_build_info", version=next(dict(labels)["version"] for n, labels in s if n == "ekya_build_info"))
        == 1
    )


def test_gpu_telemetry_can_be_turned_off() -> None:
    m = ControllerMetrics(gpu_telemetry=False)
    assert not set(GPU_SERIES) & exported_series_names(m.registry)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("ekya_camera_live_accuracy_ratio < 0.5", {"ekya_camera_live_accuracy_ratio"}),
        (
            'sum by (camera, reason) (increase(ekya_trainer_failures_total{camera=~"$camera"}[1h])) >= 3',
            {"ekya_trainer_failures_total"},
        ),
        (
            "time() - ekya_last_tick_timestamp_seconds > 3 * ekya_window_length_seconds offset 5m",
            {"ekya_last_tick_timestamp_seconds", "ekya_window_length_seconds"},
        ),
        (
            "histogram_quantile(0.9, sum by (le) (rate(ekya_planning_duration_seconds_bucket[$__rate_interval])))",
            {"ekya_planning_duration_seconds_bucket"},
        ),
        ('up{job="ekya-controller"} == 0 and on(instance) nv_gpu_utilization', {"up", "nv_gpu_utilization"}),
    ],
)
def test_referenced_metric_names(expr: str, names: set[str]) -> None:
    assert referenced_metric_names(expr) == names
