"""The controller's read-only directive endpoint (API version 1, described in protocol/directives.py):
any camera that can reach the controller learns its frame stride, the serving version and the window
clock without the data directory.

A stdlib ThreadingHTTPServer on `directives.address:port` (loopback by default). Handlers only read: the
channel's snapshot of directives (replaced whole by the reconcile step) and two gauges of the controller's
metrics registry, so a request never waits for the step and the step never waits for a request.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from controller.metrics import ControllerMetrics
from protocol.directives import (
    API_VERSION,
    CAMERAS_PATH,
    HEALTH_PATH,
    READY_PATH,
    CameraDirective,
    directive_to_json,
)

log = logging.getLogger(__name__)

STALLED_AFTER_WINDOWS = 3  # as the EkyaControllerNotTicking alert


class DirectiveSnapshot(Protocol):
    def current(self, camera: str) -> CameraDirective | None: ...


class DirectivesServer:
    def __init__(self, channel: DirectiveSnapshot, cameras: list[str], *, window_seconds: float,
                 metrics: ControllerMetrics | None = None, clock: Callable[[], float] = time.time) -> None:
        self.channel = channel
        self.cameras = list(cameras)
        self.window_seconds = window_seconds
        self.metrics = metrics
        self.clock = clock
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, port: int, address: str = "127.0.0.1") -> DirectivesServer:
        """Serve in a daemon thread (port 0: any free port). Raises OSError when the port is taken."""
        server = ThreadingHTTPServer((address, port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        # (a short poll: close() waits for the loop to notice, and a camera never waits on it)
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="directives-http", daemon=True)
        self._thread.start()
        return self

    @property
    def address(self) -> str:
        assert self._server is not None
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------------ answers: (status, body)
    def answer(self, path: str) -> tuple[HTTPStatus, dict[str, Any]]:
        path = urllib.parse.urlsplit(path).path.rstrip("/") or "/"
        if path == CAMERAS_PATH:
            known = [(name, self.channel.current(name)) for name in self.cameras]
            return HTTPStatus.OK, {"api_version": API_VERSION,
                                   "cameras": [directive_to_json(n, d) for n, d in known if d is not None]}
        if path.startswith(CAMERAS_PATH + "/"):
            return self.camera(urllib.parse.unquote(path[len(CAMERAS_PATH) + 1:]))
        if path == HEALTH_PATH:
            return self.health()
        if path == READY_PATH:
            return self.ready()
        return HTTPStatus.NOT_FOUND, _error(f"no such path: {path}; try {CAMERAS_PATH}")

    def camera(self, name: str) -> tuple[HTTPStatus, dict[str, Any]]:
        if name not in self.cameras:
            return HTTPStatus.NOT_FOUND, {**_error(f"unknown camera {name!r}"), "cameras": self.cameras}
        directive = self.channel.current(name)
        if directive is None:  # the models are still being made: the camera should ask again
            return HTTPStatus.SERVICE_UNAVAILABLE, _error(f"no directive for {name!r} yet")
        return HTTPStatus.OK, directive_to_json(name, directive)

    def health(self) -> tuple[HTTPStatus, dict[str, Any]]:
        """Live while the window loop ticks: stalled after STALLED_AFTER_WINDOWS windows without a tick."""
        last_tick = self._gauge("ekya_last_tick_timestamp_seconds")
        if not last_tick:  # the loop has not begun (the models are being made)
            return HTTPStatus.OK, {"api_version": API_VERSION, "status": "starting"}
        age = max(0.0, self.clock() - last_tick)
        stalled = age > STALLED_AFTER_WINDOWS * self.window_seconds
        return (HTTPStatus.SERVICE_UNAVAILABLE if stalled else HTTPStatus.OK,
                {"api_version": API_VERSION, "status": "stalled" if stalled else "ok",
                 "last_tick_age_seconds": round(age, 3)})

    def ready(self) -> tuple[HTTPStatus, dict[str, Any]]:
        """Ready when every camera's model serves (its directive is out only then) and Triton answers."""
        waiting = [n for n in self.cameras if self.channel.current(n) is None]
        triton_up = self._gauge("ekya_triton_up")
        triton_down = triton_up is not None and triton_up < 1  # (no supervisor: not measured, not down)
        ready = not waiting and not triton_down
        body: dict[str, Any] = {"api_version": API_VERSION, "status": "ready" if ready else "not ready"}
        if waiting:
            body["waiting_for"] = waiting
        if triton_down:
            body["triton"] = "down"
        return (HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE), body

    def _gauge(self, name: str) -> float | None:
        if self.metrics is None:
            return None
        return self.metrics.registry.get_sample_value(name)


def _error(message: str) -> dict[str, Any]:
    return {"api_version": API_VERSION, "error": message}


def _handler_for(server: DirectivesServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ekya-directives"

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            try:
                status, body = server.answer(self.path)
            except Exception:  # a bug here must not kill the server thread; the camera retries
                log.exception("directive endpoint: %s failed", self.path)
                status, body = HTTPStatus.INTERNAL_SERVER_ERROR, _error("internal error")
            self._send(status, body)

        def _send(self, status: HTTPStatus, body: Mapping[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            if status == HTTPStatus.SERVICE_UNAVAILABLE:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
            log.debug("directive endpoint: " + format, *args)

    return Handler
