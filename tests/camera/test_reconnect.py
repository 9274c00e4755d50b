"""A camera that loses Triton keeps running and reconnects to the same URL when it is back (a real
tritonserver, killed -9 and started again on the same ports; the camera is never restarted)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from camera.client import CameraClient, WindowStats
from camera.directives import HttpDirectiveWatcher
from camera.settings import load_camera_settings
from controller.triton.client import TritonClient
from controller.triton.repository import ModelRepository
from controller.triton.server import TritonServer, free_port_settings, wait_for_ports
from controller.triton.serving import ServingManager
from controller.triton.spec import ModelSpec
from protocol.camera_results import CameraResults
from sources import source_kind
from tests.camera.test_client import directive_endpoint
from tests.triton_helpers import ADMIN_KEY, INPUT_DIMS, export_tiny


class RecordingCamera(CameraClient):
    """The real client, with each request's start time and outcome kept for the test."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: list[tuple[float, bool]] = []

    def _infer(self, images: np.ndarray, stats: WindowStats, request: str = "") -> np.ndarray | None:
        started, failed_before = time.time(), stats.failed_requests
        requests_before = stats.requests
        labels = super()._infer(images, stats, request)
        if stats.requests > requests_before:  # sent, not skipped by the backoff
            self.outcomes.append((started, stats.failed_requests == failed_before))
        return labels


def _start(repo: Path, work: Path, ports: dict[str, int], runtime) -> TritonServer:
    server = TritonServer(repo, work, admin_key=ADMIN_KEY, runtime=runtime, load_models=["cam"], **ports)
    server.start()
    return server


@pytest.mark.slow
def test_camera_rides_out_a_triton_restart_on_the_same_port(tmp_path: Path, triton_runtime) -> None:
    config = tmp_path / "deployment.yaml"
    config.write_text(yaml.safe_dump({
        "cameras": [{"name": "cam", "source": {"kind": "synthetic", "seed": 3, "fps": 8, "objects_per_frame": 2}}],
        "edge_model": {"input_size": INPUT_DIMS[-1]}, "window_seconds": 60}))
    settings = load_camera_settings(config, "cam")
    frames = source_kind(settings.source.kind).open(settings.source, settings.context)
    repository = ModelRepository(tmp_path / "repo")
    ports = free_port_settings()
    server = TritonServer(repository.root, tmp_path / "triton", admin_key=ADMIN_KEY, runtime=triton_runtime, **ports)
    info = server.start()
    with TritonClient(info.grpc_url, admin_key=ADMIN_KEY) as admin:
        ServingManager(repository, admin).deploy(ModelSpec(name="cam", input_dims=INPUT_DIMS),
                                                 export_tiny(tmp_path / "m.onnx", 1)[0])
    with directive_endpoint() as (channel, directives):  # the controller's, with the camera's directive
        channel.publish("cam", t0=time.time() + 0.5, window_seconds=60, stride=1.0, window=0, stop_after_window=None)
        camera = RecordingCamera("cam", frames, f"127.0.0.1:{ports['grpc_port']}",
                                 HttpDirectiveWatcher(directives.url, "cam", interval_s=0.2),
                                 CameraResults(tmp_path / "results"), request_timeout_s=5)
        stop = threading.Event()
        runner = threading.Thread(target=camera.run, args=(stop,), kwargs={"max_windows": 1}, daemon=True)
        runner.start()
        servers = [server]
        outages: list[tuple[float, float]] = []

        def served_since(moment: float, count: int = 5) -> None:
            deadline = time.monotonic() + 60
            while sum(ok for t, ok in camera.outcomes if t > moment) < count and time.monotonic() < deadline:
                time.sleep(0.1)

        def kill_and_restart(on_ports: dict[str, int]) -> None:
            killed_at = time.time()
            os.kill(servers[-1].info.pid, signal.SIGKILL)
            servers[-1].stop()  # reaps it and its stubs, as the supervisor does
            time.sleep(2.0)  # an outage the camera sees
            assert wait_for_ports(_ports(on_ports), timeout_s=30)
            servers.append(_start(repository.root, tmp_path / "triton", on_ports, triton_runtime))
            outages.append((killed_at, time.time()))
            served_since(outages[-1][1])

        try:
            served_since(0.0)
            kill_and_restart(ports)  # the supervisor's case: back on the configured ports
        finally:
            stop.set()
            runner.join(timeout=30)
            for running in servers:
                running.stop()
    assert not runner.is_alive()
    for index, (killed_at, back_at) in enumerate(outages):
        previous = outages[index - 1][1] if index else 0.0
        before = [ok for t, ok in camera.outcomes if previous < t < killed_at]
        during = [ok for t, ok in camera.outcomes if killed_at <= t <= back_at]
        after = [ok for t, ok in camera.outcomes if t > back_at and (index + 1 == len(outages)
                                                                    or t < outages[index + 1][0])]
        assert before and all(before), index
        assert during and not any(during), index  # requests failed, counted, in the outage...
        assert len(after) >= 5 and all(after), index  # ...and only there: the same camera is served again
    assert camera.totals["reconnects"] >= 1


def _ports(ports: dict[str, int]):
    from controller.triton.server import TritonPorts

    return TritonPorts(ports["grpc_port"], ports["http_port"], ports["metrics_port"])
