"""The camera client on its own: frames made ahead of their window, a stop that does not wait for them,
the request ids it sends.

Its directive comes from the controller's real endpoint (the channel and DirectivesServer on a free
loopback port). No Triton here: the client's requests go to a closed port and fail (counted, retried with
backoff), which is what these tests need; serving is covered by tests/camera/test_remote.py.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from camera.client import CameraClient, request_id
from camera.directives import HttpDirectiveWatcher
from controller.runtime.cameras import DirectiveChannel
from controller.runtime.directives_http import DirectivesServer
from protocol.camera_results import CameraResults
from protocol.directives import CameraDirective
from trainer.streams.base import WindowData
from trainer.streams.synthetic import CameraStreamSpec, generate_window


def free_port() -> int:
    """A port nothing listens on: the client's requests to it fail, as these tests need."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SPEC = CameraStreamSpec(name="cam", seed=1, crop_size=16, fps=4, window_seconds=3, objects_per_frame=2)  # slack for a busy CI box


@contextlib.contextmanager
def directive_endpoint(cameras: tuple[str, ...] = ("cam",)) -> Iterator[tuple[DirectiveChannel, DirectivesServer]]:
    """The controller's directive channel and its HTTP endpoint, on a free loopback port."""
    channel = DirectiveChannel()
    server = DirectivesServer(channel, list(cameras), window_seconds=SPEC.window_seconds).start(0)
    try:
        yield channel, server
    finally:
        server.close()


def publish(channel: DirectiveChannel, directive: CameraDirective, camera: str = "cam") -> None:
    channel.publish(camera, t0=directive.t0, window_seconds=directive.window_seconds, stride=directive.stride,
                    window=directive.window, stop_after_window=directive.stop_after_window)


def watcher(server: DirectivesServer) -> HttpDirectiveWatcher:
    return HttpDirectiveWatcher(server.url, "cam", interval_s=0.1)


class SlowSource:
    """The synthetic stream, with every window after the first taking `slow_s` to make."""

    def __init__(self, slow_s: float, first_too: bool = False) -> None:
        self.slow_s = slow_s
        self.first_too = first_too  # the first window is slow to make as well
        self.made: list[tuple[int, float]] = []  # (window, when it was asked for)
        self.ready: dict[int, threading.Event] = {}  # set once a window's frames are made
        self.finished: dict[int, float] = {}  # when each window's frames were made

    @property
    def fps(self) -> float:
        return SPEC.fps

    def frames_per_window(self, window_seconds: float) -> int:
        return SPEC.frames_per_window

    def window(self, window: int, window_seconds: float) -> WindowData:
        self.made.append((window, time.time()))
        if window > 0 or self.first_too:
            time.sleep(self.slow_s)
        data = generate_window(SPEC, window)
        self.finished[window] = time.time()
        self.ready.setdefault(window, threading.Event()).set()
        return data


def _client(tmp_path: Path, source: SlowSource, server: DirectivesServer) -> CameraClient:
    return CameraClient("cam", source, f"127.0.0.1:{free_port()}", watcher(server), CameraResults(tmp_path),
                        request_timeout_s=0.2)


def test_next_window_is_made_while_this_one_streams(tmp_path: Path) -> None:
    source = SlowSource(slow_s=1.0)  # shorter than a window: ready when its window starts
    directive = CameraDirective(t0=time.time() + 0.5, window_seconds=SPEC.window_seconds)
    with directive_endpoint() as (channel, server):
        publish(channel, directive)
        stats = _client(tmp_path, source, server).run(threading.Event(), max_windows=2)
    assert [s.window for s in stats] == [0, 1]
    asked = dict(source.made)
    assert asked[1] < directive.t0 + SPEC.window_seconds  # asked for during window 0, not at its end
    # ...so its frames were there when it started (late frames would say so too, but the failing requests
    # to a closed port, each a fresh connection, can hold the loop up on a busy box)
    assert source.finished[1] < directive.t0 + SPEC.window_seconds


def test_a_stop_does_not_wait_for_frames_being_made(tmp_path: Path) -> None:
    source = SlowSource(slow_s=60.0)
    with directive_endpoint() as (channel, server):
        publish(channel, CameraDirective(t0=time.time() + 0.5, window_seconds=SPEC.window_seconds))
        started = time.monotonic()
        stats = _client(tmp_path, source, server).run(threading.Event(), max_windows=1)
    assert len(stats) == 1 and 1 in dict(source.made)  # window 1 was being made when the client stopped
    assert time.monotonic() - started < SPEC.window_seconds + 10


def test_first_window_is_made_while_waiting_for_the_controller(tmp_path: Path) -> None:
    # The process's first gRPC call (here to a closed port) has taken up to 2 s on a cold 2-core CI box,
    # which would make window 0's frames late for a reason this test is not about: pay it first.
    from camera.triton import InferenceClient

    InferenceClient(f"127.0.0.1:{free_port()}", timeout_s=0.2).server_ready()
    source = SlowSource(slow_s=1.5, first_too=True)
    result: list = []
    with directive_endpoint() as (channel, server):
        client = _client(tmp_path, source, server)
        runner = threading.Thread(target=lambda: result.append(client.run(
            threading.Event(), max_windows=1, first_window_seconds=SPEC.window_seconds, directive_timeout_s=20)))
        runner.start()
        # The controller starts meanwhile (longer than the window takes to make, on a busy machine too); its
        # first directive opens window 0 a second later, as the controller's does.
        deadline = time.monotonic() + 30
        while not (0 in source.ready and source.ready[0].is_set()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        directive = CameraDirective(t0=time.time() + 1.0, window_seconds=SPEC.window_seconds)
        publish(channel, directive)
        runner.join(timeout=30)
    (stats,) = result[0]
    assert stats.window == 0
    assert dict(source.made)[0] < directive.t0  # window 0 was asked for before the directive came
    assert [w for w, _ in source.made].count(0) == 1  # and made once, not again at the window's start
    assert stats.late_frames == 0  # so it dropped no frame


def test_no_directive_is_a_clear_timeout(tmp_path: Path) -> None:
    with directive_endpoint() as (_, server):  # up, but nothing published: the models are being made
        client = _client(tmp_path, SlowSource(slow_s=0.0), server)
        try:
            client.run(threading.Event(), max_windows=1, first_window_seconds=SPEC.window_seconds,
                       directive_timeout_s=0.5)
        except TimeoutError as exc:
            assert "is the controller running" in str(exc) and server.url in str(exc)
        else:
            raise AssertionError("no TimeoutError")


def test_request_ids_name_the_camera_window_and_frame() -> None:
    assert request_id("cam 0", 12, 7) == "cam 0/w12/f7"
    assert len({request_id("cam", w, f) for w in range(3) for f in range(40)}) == 120  # one per request


def test_a_request_shed_by_the_queue_policy_is_counted_apart_from_failures() -> None:
    from camera.client import is_shed
    from camera.triton import InferenceError

    # Triton 2.51's messages for a request its model's queue turned away, and a real failure
    assert is_shed(InferenceError("infer cam0: Request timeout expired"))
    assert is_shed(InferenceError("infer cam0: Exceeds maximum queue size"))
    assert not is_shed(InferenceError("infer cam0: Deadline Exceeded"))
    assert not is_shed(ConnectionError("failed to connect to all addresses"))
