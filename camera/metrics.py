"""The reference camera's own Prometheus endpoint (`ekya camera --metrics-port P`): what only the client
knows, read from its live counters (protocol/camera_results.py) at each scrape. The controller's figures
per camera come from Triton and cover any client; these add the client's side: its video source up or
down, reconnects and the time it was down, frames its ONNX detector could not run on, and the requests it
sent, failed and saw shed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LiveReader = Callable[[], dict[str, Any] | None]


class CameraCollector(Collector):
    def __init__(self, camera: str, read_live: LiveReader) -> None:
        self.camera = camera
        self.read_live = read_live

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        live = self.read_live() or {}
        source = live.get("source") or {}
        labels = [self.camera]

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=["camera"])
            family.add_metric(labels, float(value))
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["camera"])
            family.add_metric(labels, float(value))
            return family

        yield counter("ekya_camera_client_requests", "inference requests the camera sent",
                      live.get("requests_total", 0))
        yield counter("ekya_camera_client_failed_requests", "requests that failed (not shed)",
                      live.get("failed_requests_total", 0))
        yield counter("ekya_camera_client_shed_requests", "requests Triton's queue policy turned away",
                      live.get("shed_requests_total", 0))
        # A source that does not stream (synthetic, folder) is always up.
        yield gauge("ekya_camera_source_up", "1 while the camera's video source delivers frames",
                    1.0 if live.get("source_up", True) else 0.0)
        yield counter("ekya_camera_source_reconnects", "times the video stream came back after it dropped",
                      source.get("reconnects", 0))
        yield counter("ekya_camera_source_gap_seconds", "seconds the video source was down",
                      source.get("gap_seconds", 0.0))
        yield counter("ekya_camera_source_missed_frames", "frames the stream would have delivered while down",
                      source.get("missed_frames", 0))
        yield counter("ekya_camera_detector_errors", "frames the camera's ONNX detector could not be run on "
                      "(its Triton down, say): frames without crops", source.get("detector_errors", 0))
        if "stride" in live:
            yield gauge("ekya_camera_client_stride", "the frame stride the camera follows", live["stride"])
        if "window" in live:
            yield gauge("ekya_camera_client_window", "the window the camera is in", live["window"])


def serve_camera_metrics(camera: str, read_live: LiveReader, port: int, address: str = "127.0.0.1") -> int:
    """Start the endpoint on a daemon thread; returns the port it listens on (0: a free one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CameraCollector(camera, read_live))
    server, _ = start_http_server(port, addr=address, registry=registry)
    return int(server.server_address[1])
