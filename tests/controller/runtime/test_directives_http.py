"""The directive endpoint against a running controller-like server: the reconcile core on its fakes, the
real camera channel and the real HTTP server on a free loopback port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.runtime.cameras import DirectiveChannel
from controller.runtime.directives_http import DirectivesServer
from protocol.directives import API_VERSION
from tests.controller.reconcile.fakes import WINDOW_S, Harness, make_harness


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@dataclass
class Running:
    harness: Harness
    channel: DirectiveChannel
    server: DirectivesServer

    def get(self, path: str) -> tuple[int, dict]:
        return get(self.server.url + path)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    harness: list[Harness] = []

    def served(camera: str) -> int | None:  # as the deployment reads it: the state's record
        return (harness[0].state.cameras[camera].serving_version or None) if harness else None

    channel = DirectiveChannel(serving_version=served)
    harness.append(make_harness(tmp_path, cameras=channel))
    server = DirectivesServer(channel, ["cam0", "cam1"], window_seconds=WINDOW_S,
                              metrics=harness[0].scope.metrics).start(0)
    try:
        yield Running(harness[0], channel, server)
    finally:
        server.close()


def test_directives_follow_the_plan_and_the_served_version(running: Running) -> None:
    harness = running.harness
    assert running.server.address == "127.0.0.1"
    status, body = running.get("/v1/cameras/cam0")
    assert status == 200
    assert body == {"api_version": API_VERSION, "camera": "cam0", "t0": harness.state.t0, "window_seconds": WINDOW_S,
                    "window": 0, "stride": 1.0, "serving_version": 1, "stop_after_window": None}

    harness.enter_window(0)
    for camera in ("cam0", "cam1"):
        harness.spool(camera, 0, chunk=0)
        harness.spool(camera, 0, chunk=1)
    harness.enter_window(1)  # window 0 closed, window 1 planned: strides from the plan
    planned = harness.state.record_for(1)
    assert planned is not None
    status, body = running.get("/v1/cameras")
    assert status == 200 and [c["camera"] for c in body["cameras"]] == ["cam0", "cam1"]
    for entry in body["cameras"]:
        assert entry["stride"] == planned.cameras[entry["camera"]].stride == harness.state.cameras[entry["camera"]].stride
        assert entry["window"] == 1 and entry["t0"] == harness.state.t0
    assert any(c["stride"] > 1 for c in body["cameras"]), "the plan gave every camera its full share"
    assert not list(harness.scope.layout.root.rglob("directive.json"))  # the endpoint is the only channel

    harness.trainers.finish("cam0", 0.9)  # published as version 2 mid-window: no new directive, a new version
    harness.clock.advance(3)
    harness.reconciler.reconcile()
    assert harness.state.cameras["cam0"].serving_version == 2
    assert running.get("/v1/cameras/cam0")[1]["serving_version"] == 2
    assert running.get("/v1/cameras/cam1")[1]["serving_version"] == 1


def test_unknown_camera_and_path_are_json_404s(running: Running) -> None:
    status, body = running.get("/v1/cameras/nope")
    assert status == 404 and body["error"] == "unknown camera 'nope'" and body["cameras"] == ["cam0", "cam1"]
    status, body = running.get("/v2/cameras/cam0")
    assert status == 404 and body["api_version"] == API_VERSION and "no such path" in body["error"]


def test_health_and_readiness(running: Running) -> None:
    running.harness.scope.metrics.set_triton_up(True)  # as the deployment's Triton supervisor does at start
    assert running.get("/readyz") == (200, {"api_version": API_VERSION, "status": "ready"})
    status, body = running.get("/healthz")  # begin() set the window length: its time counts as a tick
    assert status == 200 and body["status"] == "ok" and body["last_tick_age_seconds"] < 60
    running.harness.scope.metrics.last_tick.set(0.5)  # no tick for decades: the loop stalled
    status, body = running.get("/healthz")
    assert status == 503 and body["status"] == "stalled"
    running.harness.scope.metrics.set_triton_up(False)
    assert running.get("/readyz") == (503, {"api_version": API_VERSION, "status": "not ready", "triton": "down"})


def test_before_the_first_directive_cameras_are_told_to_wait() -> None:
    """The models are still being made: no directive yet, not ready, but alive."""
    server = DirectivesServer(DirectiveChannel(), ["cam0"], window_seconds=10.0).start(0)
    try:
        url = server.url
        status, body = get(url + "/v1/cameras/cam0")
        assert status == 503 and "yet" in body["error"]
        assert get(url + "/v1/cameras") == (200, {"api_version": API_VERSION, "cameras": []})
        assert get(url + "/readyz") == (503, {"api_version": API_VERSION, "status": "not ready",
                                              "waiting_for": ["cam0"]})
        assert get(url + "/healthz")[0] == 200
    finally:
        server.close()
