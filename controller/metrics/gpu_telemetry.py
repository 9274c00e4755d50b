"""GPU telemetry for /metrics: utilisation and memory of every GPU, read through NVML at scrape time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["GPU_SERIES", "GpuCollector"]

GPU_SERIES = (
    "ekya_gpu_utilization_ratio",
    "ekya_gpu_memory_used_bytes",
    "ekya_gpu_memory_total_bytes",
)


class GpuCollector(Collector):
    """GPU utilisation and memory read through NVML at scrape time; exports nothing without a GPU."""

    def collect(self) -> Iterator[Metric]:
        from controller.gpu import gpu_inventory  # imported lazily: NVML is initialised on first scrape

        gpus = gpu_inventory()
        if not gpus:
            return
        labels = ["gpu", "uuid", "name"]
        util = GaugeMetricFamily(GPU_SERIES[0], "GPU busy fraction (NVML).", labels=labels)
        used = GaugeMetricFamily(GPU_SERIES[1], "GPU memory in use (NVML).", labels=labels)
        total = GaugeMetricFamily(GPU_SERIES[2], "GPU memory size (NVML).", labels=labels)
        for gpu in gpus:
            values = [str(gpu.index), gpu.uuid, gpu.name]
            if gpu.utilization_ratio is not None:
                util.add_metric(values, gpu.utilization_ratio)
            used.add_metric(values, gpu.memory_used_bytes)
            total.add_metric(values, gpu.memory_total_bytes)
        yield from (util, used, total)

    def describe(self) -> Iterable[Metric]:
        return []  # metric set depends on the host: do not let the registry pre-check names
