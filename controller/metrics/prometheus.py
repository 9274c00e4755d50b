"""Prometheus metrics of the controller and the camera clients, and the /metrics endpoint.

Every `ControllerMetrics` owns its own CollectorRegistry (tests can make several; nothing is registered
in prometheus_client's global registry). Names follow the Prometheus conventions: an `ekya_` prefix,
base units (`_seconds`, `_bytes`), `_ratio` for 0..1 values, `_total` for counters, `_info` for the
retraining config. Shares are fractions of one GPU (of the CPU pool in CPU mode).

The alert rules (alerts/ekya-rules.yml) and the Grafana dashboard use these names; tests check that every
name they reference is exported here (`exported_series_names`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.registry import Collector

from .gpu_telemetry import GPU_SERIES, GpuCollector

if TYPE_CHECKING:
    from controller.triton.metrics_reader import ServingCounts

__all__ = ["TRAINER_FAILURE_REASONS", "ControllerMetrics", "MetricsServer", "exported_series_names"]

# Trainer failure reasons are a closed set (a label value per failure text would explode cardinality).
TRAINER_FAILURE_REASONS = ("oom", "crash", "timeout", "killed", "invalid_output", "other")
ROLLBACK_REASONS = ("manual", "auto")  # `ekya rollback`; a published model worse on live data
# captured crops dropped: from before window 0; their window closed before they reached the controller
CAPTURE_DISCARD_REASONS = ("before_start", "closed_window")

_WINDOW_BUCKETS = (1, 5, 10, 20, 30, 60, 120, 200, 300, 600, 1200, 3600)
_PLANNING_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_STEP_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 200, 600)
_ERROR_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)

_CameraMetric = TypeVar("_CameraMetric", Gauge, Counter, Info)


@dataclass
class MetricsServer:
    """A running /metrics HTTP endpoint."""

    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def address(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class ControllerMetrics:
    """All the project's metrics, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None, *, gpu_telemetry: bool = True) -> None:
        # The `_created` series double every counter/histogram and nothing here reads them. The switch is
        # process-wide; the processes exporting these metrics are ours.
        disable_created_metrics()
        self._ticked = False
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        # every series labelled by camera alone, so that a camera leaving drops them all
        self._per_camera: list[Gauge | Counter | Info] = []

        def per_camera(kind: type[_CameraMetric], name: str, documentation: str) -> _CameraMetric:
            metric = kind(name, documentation, ["camera"], registry=r)
            self._per_camera.append(metric)
            return metric

        def histogram(name: str, documentation: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, documentation, registry=r, buckets=buckets)

        # --------------------------------------------------------------------------- per camera
        self.live_accuracy = per_camera(
            Gauge, "ekya_camera_live_accuracy_ratio",
            "Accuracy of the serving model on the last window's freshly labelled frames.")
        self.retrained_accuracy = per_camera(
            Gauge, "ekya_camera_retrained_accuracy_ratio",
            "Held-out accuracy of the camera's last published retrained model (a finished job's or the "
            "micro-profiler's trial model).")
        self.serving_version = per_camera(
            Gauge, "ekya_camera_serving_version", "Triton model version serving the camera.")
        self.inference_share = per_camera(
            Gauge, "ekya_camera_inference_share_ratio",
            "Planned inference share (fraction of one GPU, or of the CPU pool).")
        self.training_share = per_camera(
            Gauge, "ekya_camera_training_share_ratio",
            "Planned retraining share (fraction of one GPU, or of the CPU pool); 0 when not retraining.")
        self.instances = per_camera(
            Gauge, "ekya_camera_triton_instances", "Triton model instances serving the camera.")
        self.frame_stride = per_camera(
            Gauge, "ekya_camera_frame_stride", "Frame stride the camera client follows (1 = every frame).")
        self.retraining_config = per_camera(
            Info, "ekya_camera_retraining_config",
            "Retraining configuration chosen for the camera this window.")
        self.profiled_predicted = per_camera(
            Gauge, "ekya_microprofiler_predicted_accuracy_ratio",
            "Micro-profiler's predicted end accuracy of the chosen retraining config.")
        self.profiled_actual = per_camera(
            Gauge, "ekya_microprofiler_actual_accuracy_ratio",
            "Measured end accuracy of the chosen retraining config (compare with the prediction).")
        self.profiled_error = histogram(
            "ekya_microprofiler_absolute_error_ratio",
            "Absolute error of the micro-profiler's accuracy predictions.", _ERROR_BUCKETS)
        # from Triton's own counters of the camera's model (controller/triton/metrics_reader.py): every
        # client of the model counts, ours or not
        self.inference_requests = per_camera(
            Counter, "ekya_camera_inference_requests",
            "Inference requests Triton answered for the camera's model: successes, failures and shed.")
        self.inference_successes = per_camera(
            Counter, "ekya_camera_inference_successes", "Inference requests of the camera's model that succeeded.")
        self.inference_failures = per_camera(
            Counter, "ekya_camera_inference_failures",
            "Inference requests of the camera's model that failed in Triton (shed ones not included).")
        self.inference_shed = per_camera(
            Counter, "ekya_camera_inference_shed",
            "Requests of the camera's model that Triton's queue policy rejected after waiting "
            "inference.queue_timeout_ms (the camera sends more than its share is served).")
        self.inference_latency = per_camera(
            Gauge, "ekya_camera_inference_latency_seconds",
            "Mean time in Triton (queue and compute) of the camera's successful requests between the last "
            "two reads of Triton's metrics that saw any.")
        self.inference_queue_time = per_camera(
            Gauge, "ekya_camera_inference_queue_seconds",
            "Mean queue wait in Triton of the camera's successful requests between the last two reads of "
            "its metrics that saw any.")
        self.captured_crops = per_camera(
            Counter, "ekya_camera_captured_crops",
            "Crops the camera's Triton model captured (server side) that reached the controller's spool.")
        self.capture_samples = per_camera(
            Counter, "ekya_capture_samples",
            "Crops the camera's Triton model captured and wrote for the controller (its writers' own count).")
        self.capture_dropped = Counter(
            "ekya_capture_dropped",
            "Sampled crops the camera's Triton model did not write, by reason (budget: its capture directory "
            "full; backlog: more waiting than a chunk may hold; error); requests never fail for it.",
            ["camera", "reason"], registry=r)
        self.capture_errors = per_camera(
            Counter, "ekya_capture_errors", "Errors of the camera model's capture (logged in Triton's log).")
        self.capture_discarded = Counter(
            "ekya_camera_capture_discarded_crops",
            "Captured crops the controller dropped, by reason (before_start: before window 0; closed_window: "
            "their window had closed when they reached the controller).", ["camera", "reason"], registry=r)

        # --------------------------------------------------------------------------- controller
        self.window_length = Gauge(
            "ekya_window_length_seconds", "Configured retraining window length.", registry=r)
        self.current_window = Gauge("ekya_current_window", "Index of the window in progress.", registry=r)
        self.window_duration = histogram(
            "ekya_window_duration_seconds", "Wall time of completed windows.", _WINDOW_BUCKETS)
        self.window_step_duration = histogram(
            "ekya_window_step_duration_seconds",
            "Wall time of the window step: close the last window, label, measure, profile, plan, apply.",
            _STEP_BUCKETS)
        self.planning_duration = histogram(
            "ekya_planning_duration_seconds", "Time the scheduler took to plan (per planning run).",
            _PLANNING_BUCKETS)
        self.windows_completed = Counter("ekya_windows_completed", "Windows completed.", registry=r)
        self.last_tick = Gauge(
            "ekya_last_tick_timestamp_seconds", "Unix time of the controller's last window tick.", registry=r)
        self.trainer_failures = Counter(
            "ekya_trainer_failures", "Retraining jobs that failed, by reason.", ["camera", "reason"],
            registry=r)
        self.swaps = per_camera(
            Counter, "ekya_model_swaps", "Successful hot swaps of a camera's serving model.")
        self.swap_failures = per_camera(
            Counter, "ekya_model_swap_failures", "Hot swaps that failed (the old version kept serving).")
        # ------------------------------------------------------------------- disk (retention passes)
        self.data_dir_bytes = Gauge(
            "ekya_data_dir_bytes",
            "Bytes under the deployment's data directory (the model repository too when inside it), "
            "after the last retention pass.", registry=r)
        self.data_dir_kind_bytes = Gauge(
            "ekya_data_dir_kind_bytes", "Bytes under the data directory by kind, after the last retention pass.",
            ["kind"], registry=r)
        self.disk_budget_bytes = Gauge(
            "ekya_disk_budget_bytes", "The data directory's disk budget (data.disk_budget_mb).", registry=r)
        self.retention_deleted_bytes = Counter(
            "ekya_retention_deleted_bytes", "Bytes retention deleted from the data directory, by kind.", ["kind"],
            registry=r)
        self.state_repairs = per_camera(
            Counter, "ekya_state_repairs", "Times the recorded serving version was squared with Triton's index.")
        self.rollbacks = Counter(
            "ekya_rollbacks", "Rollbacks of a camera's serving model to an earlier version's checkpoint, by reason "
            "(manual: ekya rollback; auto: a newly published model was worse on the window's live data).",
            ["camera", "reason"], registry=r)
        self.triton_up = Gauge(
            "ekya_triton_up", "1 while the Triton server answers its liveness check, else 0.", registry=r)
        self.triton_restarts = Counter(
            "ekya_triton_restarts", "Restarts of the embedded Triton server after it died.", registry=r)
        self.quarantined_files = per_camera(
            Counter, "ekya_quarantined_files",
            "Corrupt data files (spool chunks, golden labels, window files) moved to the quarantine folder.")
        self.build_info = Info("ekya_build", "Controller build.", registry=r)
        self.build_info.info({"version": _version()})

        if gpu_telemetry:
            r.register(GpuCollector())

    # ------------------------------------------------------------------------------ camera methods
    def observe_camera(
        self,
        camera: str,
        *,
        live_accuracy: float | None = None,
        retrained_accuracy: float | None = None,
        serving_version: int | None = None,
        inference_share: float | None = None,
        training_share: float | None = None,
        instances: int | None = None,
        frame_stride: int | None = None,
    ) -> None:
        """Set whichever of the camera's gauges are given."""
        for gauge, value in (
            (self.live_accuracy, live_accuracy),
            (self.retrained_accuracy, retrained_accuracy),
            (self.serving_version, serving_version),
            (self.inference_share, inference_share),
            (self.training_share, training_share),
            (self.instances, instances),
            (self.frame_stride, frame_stride),
        ):
            if value is not None:
                gauge.labels(camera).set(float(value))

    def set_retraining_config(
        self, camera: str, config: str | None, params: Mapping[str, Any] | None = None
    ) -> None:
        """The config chosen for the camera (None: not retraining this window)."""
        values = {"config": config or "none"}
        for key, value in (params or {}).items():
            if key in ("camera", "config"):
                continue
            values[re.sub(r"[^a-zA-Z0-9_]", "_", key)] = str(value)
        self.retraining_config.labels(camera).info(values)

    def observe_profile(self, camera: str, predicted: float, actual: float) -> None:
        self.profiled_predicted.labels(camera).set(predicted)
        self.profiled_actual.labels(camera).set(actual)
        self.profiled_error.observe(abs(predicted - actual))

    def add_camera(self, camera: str) -> None:
        """Create the camera's event counters at zero, so that every series the dashboard and the alerts
        read exists before its first event (a missing series reads as "no data", not as none)."""
        for counter in (self.swaps, self.swap_failures, self.state_repairs, self.quarantined_files,
                        self.inference_requests, self.inference_successes, self.inference_failures,
                        self.inference_shed):
            counter.labels(camera)
        for reason in TRAINER_FAILURE_REASONS:
            self.trainer_failures.labels(camera, reason)
        for reason in ROLLBACK_REASONS:
            self.rollbacks.labels(camera, reason)

    def record_serving(self, camera: str, increments: ServingCounts) -> None:
        """Triton's figures for the camera's model since the last read (controller/triton/metrics_reader.py)."""
        self.inference_requests.labels(camera).inc(increments.requests)
        self.inference_successes.labels(camera).inc(increments.successes)
        self.inference_failures.labels(camera).inc(increments.failures)
        self.inference_shed.labels(camera).inc(increments.shed)
        if increments.successes > 0:
            self.inference_latency.labels(camera).set(increments.request_us / increments.successes / 1e6)
            self.inference_queue_time.labels(camera).set(increments.queue_us / increments.successes / 1e6)

    def record_capture(self, camera: str, ingested: int, discarded: Mapping[str, int]) -> None:
        """Captured crops moved into the spool, and those dropped (by reason)."""
        if ingested:
            self.captured_crops.labels(camera).inc(ingested)
        for reason, count in discarded.items():
            if reason not in CAPTURE_DISCARD_REASONS:
                raise ValueError(f"discard reason must be one of {CAPTURE_DISCARD_REASONS}, got {reason!r}")
            if count:
                self.capture_discarded.labels(camera, reason).inc(count)

    def record_capture_writers(self, camera: str, samples: int, dropped: Mapping[str, int], errors: int) -> None:
        """The capture writers' counts in Triton (protocol/capture.py), read from their counts files."""
        if samples:
            self.capture_samples.labels(camera).inc(samples)
        for reason, count in dropped.items():
            if count:
                self.capture_dropped.labels(camera, reason).inc(count)
        if errors:
            self.capture_errors.labels(camera).inc(errors)

    def record_swap(self, camera: str, ok: bool) -> None:
        (self.swaps if ok else self.swap_failures).labels(camera).inc()

    def record_state_repair(self, camera: str) -> None:
        self.state_repairs.labels(camera).inc()

    def record_trainer_failure(self, camera: str, reason: str) -> None:
        if reason not in TRAINER_FAILURE_REASONS:
            reason = "other"
        self.trainer_failures.labels(camera, reason).inc()

    def record_rollback(self, camera: str, reason: str) -> None:
        if reason not in ROLLBACK_REASONS:
            raise ValueError(f"rollback reason must be one of {ROLLBACK_REASONS}, got {reason!r}")
        self.rollbacks.labels(camera, reason).inc()

    def record_quarantined(self, camera: str) -> None:
        self.quarantined_files.labels(camera).inc()

    def remove_camera(self, camera: str) -> None:
        """Drop a camera's series (it left the deployment)."""
        for metric in self._per_camera:
            try:
                metric.remove(camera)
            except KeyError:
                pass
        for reason in TRAINER_FAILURE_REASONS:
            try:
                self.trainer_failures.remove(camera, reason)
            except KeyError:
                pass
        for reason in ROLLBACK_REASONS:
            try:
                self.rollbacks.remove(camera, reason)
            except KeyError:
                pass
        for reason in CAPTURE_DISCARD_REASONS:
            try:
                self.capture_discarded.remove(camera, reason)
            except KeyError:
                pass

    # -------------------------------------------------------------------------- controller methods
    def set_window_length(self, seconds: float) -> None:
        """Mark this process as running the window loop (the not-ticking alert only watches such
        processes). Until the first tick, the last-tick time is the time of this call."""
        if seconds <= 0:
            raise ValueError(f"window length must be > 0 s, got {seconds}")
        self.window_length.set(seconds)
        if not self._ticked:
            self.last_tick.set(time.time())

    def tick(self, window: int | None = None, timestamp: float | None = None) -> None:
        """The window loop ran (call at every tick, even one that only coalesced a late window)."""
        self._ticked = True
        self.last_tick.set(time.time() if timestamp is None else timestamp)
        if window is not None:
            self.current_window.set(window)

    def record_window(self, duration_s: float) -> None:
        """A window closed: its wall time from its start to its close (a late tick makes it longer)."""
        self.window_duration.observe(duration_s)
        self.windows_completed.inc()

    def record_step(self, duration_s: float) -> None:
        """The work of one window step (how much of the window the controller itself takes)."""
        self.window_step_duration.observe(duration_s)

    def record_planning(self, duration_s: float) -> None:
        self.planning_duration.observe(duration_s)

    def record_disk_usage(self, by_kind: Mapping[str, int], budget_bytes: int) -> None:
        """The data directory's bytes by kind (a retention pass measured them) and its budget."""
        for kind, size in by_kind.items():
            self.data_dir_kind_bytes.labels(kind).set(size)
        self.data_dir_bytes.set(sum(by_kind.values()))
        self.disk_budget_bytes.set(budget_bytes)

    def record_retention(self, deleted: Mapping[str, int]) -> None:
        for kind, size in deleted.items():
            if size > 0:
                self.retention_deleted_bytes.labels(kind).inc(size)
    def set_triton_up(self, up: bool) -> None:
        self.triton_up.set(1 if up else 0)

    def record_triton_restart(self) -> None:
        self.triton_restarts.inc()

    # ---------------------------------------------------------------------------------- exposition
    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, address: str = "127.0.0.1") -> MetricsServer:
        """Start the /metrics endpoint in a daemon thread (port 0: any free port)."""
        server, thread = start_http_server(port, addr=address, registry=self.registry)
        return MetricsServer(server, thread)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ekya")
    except PackageNotFoundError:
        return "unknown"


# -------------------------------------------------------------------------------- name bookkeeping
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
    "gaugehistogram": ("_gsum", "_gcount", "_bucket"),
}


def exported_series_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry can export, whether or not a labelled child exists yet (and the
    GPU series when a GpuCollector is registered, even on a machine without a GPU)."""
    names: set[str] = set()
    for family in registry.collect():
        suffixes = _SUFFIXES.get(family.type)
        names |= {family.name} if suffixes is None else {family.name + s for s in suffixes}
    if any(isinstance(c, GpuCollector) for c in _collectors(registry)):
        names |= set(GPU_SERIES)
    return names


def _collectors(registry: CollectorRegistry) -> list[Collector]:
    return list(getattr(registry, "_collector_to_names", {}))
