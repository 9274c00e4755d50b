"""The camera following its directive through the controller's endpoint: a real client object against
the real HTTP server (the controller's channel and DirectivesServer, on loopback).
No Triton: requests go to a closed port and fail, which does not matter to the stride the camera follows."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from camera.client import CameraClient
from camera.directives import HttpDirectiveWatcher
from controller.runtime.cameras import DirectiveChannel
from controller.runtime.directives_http import DirectivesServer
from protocol.camera_results import CameraResults
from tests.camera.test_client import SPEC, free_port
from trainer.streams.synthetic import generate_window


class Frames:
    fps = SPEC.fps

    def frames_per_window(self, window_seconds: float) -> int:
        return SPEC.frames_per_window

    def window(self, window: int, window_seconds: float):
        return generate_window(SPEC, window)


def _wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_camera_follows_a_stride_change_through_the_endpoint(tmp_path: Path) -> None:
    channel = DirectiveChannel(serving_version=lambda camera: 3)
    t0 = time.time() + 0.5
    channel.publish("cam", t0=t0, window_seconds=SPEC.window_seconds, stride=1.0, window=0, stop_after_window=1)
    server = DirectivesServer(channel, ["cam"], window_seconds=SPEC.window_seconds).start(0)
    watcher = HttpDirectiveWatcher(server.url, "cam", interval_s=0.1)
    client = CameraClient("cam", Frames(), f"127.0.0.1:{free_port()}", watcher, CameraResults(tmp_path / "results"),
                          request_timeout_s=0.2)
    done: list = []
    runner = threading.Thread(target=lambda: done.extend(client.run(threading.Event(), directive_timeout_s=10)))
    try:
        runner.start()
        _wait_for(lambda: time.time() > t0 + SPEC.window_seconds + 0.2)  # into window 1
        channel.publish("cam", t0=t0, window_seconds=SPEC.window_seconds, stride=3.0, window=1,
                        stop_after_window=1)
        runner.join(timeout=20)
    finally:
        server.close()
    assert not runner.is_alive(), "the camera did not stop after the window the directive named"
    assert [s.window for s in done] == [0, 1]
    assert set(done[0].stride_frames) == {1.0}
    assert done[1].stride_frames[3.0] > 0  # followed within the window, at the next poll
    assert watcher.current is not None and watcher.current.serving_version == 3
    assert watcher.fetches > 0


def test_the_last_directive_is_kept_while_the_controller_is_away() -> None:
    channel = DirectiveChannel()
    channel.publish("cam", t0=time.time(), window_seconds=10.0, stride=2.0, window=0, stop_after_window=None)
    server = DirectivesServer(channel, ["cam"], window_seconds=10.0).start(0)
    port = server.port
    watcher = HttpDirectiveWatcher(server.url, "cam", interval_s=0.05, max_backoff_s=0.2, timeout_s=1.0)
    try:
        watcher.poll()
        _wait_for(lambda: watcher.current is not None)
        server.close()  # the controller goes away (restarting): requests fail, the camera keeps its stride
        failures = watcher.failures
        _wait_for(lambda: watcher.failures >= failures + 3)
        assert watcher.poll() is not None and watcher.poll().stride == 2.0
        channel.publish("cam", t0=time.time(), window_seconds=10.0, stride=4.0, window=1, stop_after_window=None)
        server = DirectivesServer(channel, ["cam"], window_seconds=10.0).start(port)  # back, same port
        _wait_for(lambda: watcher.poll().stride == 4.0)  # picked up again after its backoff
    finally:
        watcher.close()
        server.close()
