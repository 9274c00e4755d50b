"""Prometheus metrics: the controller's and the camera clients' (`prometheus`), and GPU telemetry read
through NVML at scrape time (`gpu_telemetry`)."""

from .gpu_telemetry import GPU_SERIES, GpuCollector
from .prometheus import TRAINER_FAILURE_REASONS, ControllerMetrics, MetricsServer, exported_series_names

__all__ = ["GPU_SERIES", "TRAINER_FAILURE_REASONS", "ControllerMetrics", "GpuCollector", "MetricsServer",
           "exported_series_names"]
