"""The camera client on its own: frames made ahead of their window, and a stop that does not wait for them.

No Triton here: the client's requests go to a closed port and fail (counted, retried with backoff), which
is what these tests need; serving is covered by tests/e2e/test_controller_end_to_end.py.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from camera.client import CameraClient
from protocol.directives import CameraDirective, write_directive
from protocol.files import CameraFiles
from trainer.streams.base import WindowData
from trainer.streams.synthetic import CameraStreamSpec, generate_window


def free_port() -> int:
    """A port nothing listens on: the client's requests to it fail, as these tests need."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SPEC = CameraStreamSpec(name="cam", seed=1, crop_size=16, fps=4, window_seconds=3, objects_per_frame=2)  # slack for a busy CI box


class SlowSource:
    """The synthetic stream, with every window after the first taking `slow_s` to make."""

    def __init__(self, slow_s: float, first_too: bool = False) -> None:
        self.slow_s = slow_s
        self.first_too = first_too  # the first window is slow to make as well
        self.made: list[tuple[int, float]] = []  # (window, when it was asked for)
        self.ready: dict[int, threading.Event] = {}  # set once a window's frames are made

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
        self.ready.setdefault(window, threading.Event()).set()
        return data


def _client(tmp_path: Path, source: SlowSource) -> tuple[CameraClient, CameraDirective]:
    layout = CameraFiles(tmp_path)
    directive = CameraDirective(t0=time.time(), window_seconds=SPEC.window_seconds)
    layout.directive_file("cam").parent.mkdir(parents=True, exist_ok=True)
    write_directive(layout.directive_file("cam"), directive)
    client = CameraClient("cam", source, layout, f"127.0.0.1:{free_port()}", request_timeout_s=0.2)
    return client, directive


def test_next_window_is_made_while_this_one_streams(tmp_path: Path) -> None:
    source = SlowSource(slow_s=1.0)  # shorter than a window: ready when its window starts
    client, directive = _client(tmp_path, source)
    stats = client.run(threading.Event(), max_windows=2)
    assert [s.window for s in stats] == [0, 1]
    asked = dict(source.made)
    assert asked[1] < directive.t0 + SPEC.window_seconds  # asked for during window 0, not at its end
    assert stats[1].late_frames == 0  # so window 1 dropped no frame for being late


def test_a_stop_does_not_wait_for_frames_being_made(tmp_path: Path) -> None:
    source = SlowSource(slow_s=60.0)
    client, _ = _client(tmp_path, source)
    started = time.monotonic()
    stats = client.run(threading.Event(), max_windows=1)
    assert len(stats) == 1 and 1 in dict(source.made)  # window 1 was being made when the client stopped
    assert time.monotonic() - started < SPEC.window_seconds + 10


def test_first_window_is_made_while_waiting_for_the_controller(tmp_path: Path) -> None:
    # The process's first gRPC call (here to a closed port) has taken up to 2 s on a cold 2-core CI box,
    # which would make window 0's frames late for a reason this test is not about: pay it first.
    from camera.triton import InferenceClient

    InferenceClient(f"127.0.0.1:{free_port()}", timeout_s=0.2).server_ready()
    source = SlowSource(slow_s=1.5, first_too=True)
    layout = CameraFiles(tmp_path)
    client = CameraClient("cam", source, layout, lambda: f"127.0.0.1:{free_port()}", request_timeout_s=0.2)
    result: list = []
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
    layout.directive_file("cam").parent.mkdir(parents=True, exist_ok=True)
    write_directive(layout.directive_file("cam"), directive)
    runner.join(timeout=30)
    (stats,) = result[0]
    assert stats.window == 0
    assert dict(source.made)[0] < directive.t0  # window 0 was asked for before the directive came
    assert [w for w, _ in source.made].count(0) == 1  # and made once, not again at the window's start
    assert stats.late_frames == 0  # so it dropped no frame


def test_no_directive_is_a_clear_timeout(tmp_path: Path) -> None:
    client = CameraClient("cam", SlowSource(slow_s=0.0), CameraFiles(tmp_path), "127.0.0.1:1")
    try:
        client.run(threading.Event(), max_windows=1, first_window_seconds=SPEC.window_seconds,
                   directive_timeout_s=0.5)
    except TimeoutError as exc:
        assert "is the controller running" in str(exc)
    else:
        raise AssertionError("no TimeoutError")
