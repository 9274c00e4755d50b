"""controller/runtime/supervision.py: a dead embedded Triton comes back on its ports, serving as before."""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from controller.metrics import ControllerMetrics
from controller.runtime.serving import TritonServing
from controller.runtime.supervision import Backoff, EmbeddedTriton, TritonSupervisor
from controller.triton.client import TritonClient
from controller.triton.repository import ModelRepository
from controller.triton.server import TritonPorts, TritonServer, free_port_settings
from controller.triton.serving import PublishError, ServingManager
from controller.triton.spec import ModelSpec
from tests.triton_helpers import ADMIN_KEY, INPUT_DIMS, export_tiny

SPEC = ModelSpec(name="cam-a", input_dims=INPUT_DIMS)


def _free_ports() -> TritonPorts:
    ports = free_port_settings()
    return TritonPorts(ports["grpc_port"], ports["http_port"], ports["metrics_port"])


def _scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {line.split()[0]: float(line.split()[1]) for line in lines if line.startswith("ekya_triton_")}


def test_backoff_doubles_to_its_cap_and_starts_afresh():
    backoff = Backoff(initial_s=1.0, cap_s=30.0)
    assert [backoff.next() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    backoff.reset()
    assert backoff.next() == 1


def test_failed_restarts_back_off_to_the_cap(tmp_path: Path):
    # The fault is real: something else listens on Triton's gRPC port, so every start is refused.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        free = _free_ports()
        ports = TritonPorts(squatter.getsockname()[1], free.http, free.metrics)
        embedded = EmbeddedTriton(ModelRepository(tmp_path / "repo"), tmp_path / "work", ADMIN_KEY, "127.0.0.1",
                                  ports, tmp_path / "server.json", port_wait_s=0.0)
        dead = TritonServer(tmp_path / "repo", tmp_path / "work", admin_key=ADMIN_KEY)  # never started
        now = [0.0]
        metrics = ControllerMetrics(gpu_telemetry=False)
        supervisor = TritonSupervisor(metrics, server=dead, embedded=embedded, clock=lambda: now[0])
        attempts_at = []
        while now[0] < 200:
            before = supervisor.attempts
            supervisor.check()
            if supervisor.attempts > before:
                attempts_at.append(now[0])
            now[0] += 0.5
    assert attempts_at[0] == 1.0  # the first try a second after the death was seen
    gaps = [b - a for a, b in zip(attempts_at, attempts_at[1:], strict=False)]
    assert gaps[:6] == [2, 4, 8, 16, 30, 30]
    assert max(gaps) == 30  # bounded
    assert supervisor.restarts == 0 and metrics.triton_up._value.get() == 0


@pytest.mark.slow
def test_kill_9_under_a_running_supervisor_comes_back_on_the_same_ports_serving_the_same_versions(
        tmp_path: Path, triton_runtime):
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    models = [export_tiny(tmp_path / f"m{seed}.onnx", seed) for seed in (1, 2, 3)]
    repository = ModelRepository(tmp_path / "repo")
    embedded = EmbeddedTriton(repository, tmp_path / "triton", ADMIN_KEY, "127.0.0.1", _free_ports(),
                              tmp_path / "triton" / "server.json", runtime=triton_runtime)
    server = embedded.start()
    client = TritonClient(server.info.grpc_url, admin_key=ADMIN_KEY, timeout_s=30)
    serving = TritonServing(ServingManager(repository, client), client)
    serving.ensure_model(SPEC)
    serving.publish("cam-a", models[0][0])
    assert serving.publish("cam-a", models[1][0]) == 2
    metrics = ControllerMetrics(gpu_telemetry=False)
    endpoint = metrics.serve(0, "127.0.0.1")
    supervisor = TritonSupervisor(metrics, server=server, embedded=embedded, backoff=Backoff(initial_s=2.0),
                                  after_restart=lambda _server: serving.reload_after_restart())
    aps = BackgroundScheduler()
    aps.add_job(supervisor.check, IntervalTrigger(seconds=1), coalesce=True, max_instances=1)
    aps.start()
    old_pid = server.info.pid
    try:
        os.kill(old_pid, signal.SIGKILL)
        # While Triton is down a publish fails cleanly, leaving the repository as it was.
        with pytest.raises(PublishError):
            serving.publish("cam-a", models[2][0])
        assert repository.versions("cam-a") == [1, 2]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (supervisor.restarts and client.model_ready("cam-a")):
            time.sleep(0.2)
        assert supervisor.restarts == 1, (tmp_path / "triton" / "tritonserver.log").read_text()[-2000:]
        restarted = supervisor.server
        assert restarted is not None and restarted.info is not None and restarted.info.pid != old_pid
        assert (restarted.info.grpc_port, restarted.info.http_port, restarted.info.metrics_port) == (
            embedded.ports.grpc, embedded.ports.http, embedded.ports.metrics)
        assert TritonServer.attach(embedded.info_file, ADMIN_KEY).info.pid == restarted.info.pid  # server.json
        assert client.served_version("cam-a") == 2  # the same version, through the reconnected admin client
        with TritonClient(server.info.grpc_url, timeout_s=30) as camera:  # a client on the old endpoint
            np.testing.assert_allclose(camera.infer("cam-a", models[1][1]), models[1][2], atol=1e-4)
        scraped = _scrape(endpoint.url)
        assert scraped["ekya_triton_restarts_total"] == 1.0 and scraped["ekya_triton_up"] == 1.0
        assert serving.publish("cam-a", models[2][0]) == 3  # serving changes work again
    finally:
        aps.shutdown(wait=True)
        if supervisor.server is not None:
            supervisor.server.stop()
        endpoint.close()
        client.close()
