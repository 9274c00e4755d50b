"""Real videos and real streams for the video source's tests: synthetic scenes (known boxes) encoded with
PyAV, an HTTP server that streams a video file live (paced at real time, cut and restarted at will), and
a server that accepts connections and never answers."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from trainer.streams.scene import SceneFrame, SceneSpec, encode_video, render_scene


def scene_video(path: Path, spec: SceneSpec) -> list[SceneFrame]:
    """Encode the scene as a real video at `path` (.mp4: H.264 in MP4, .ts: H.264 in MPEG-TS); its frames."""
    frames = list(render_scene(spec))
    encode_video(path, [f.image for f in frames], spec.fps)
    return frames


class LiveHttpStream:
    """Serves a video file over HTTP as a live stream: each GET gets the file from its start, paced at real
    time (`seconds` per pass), over and over. `cut()` closes the listening socket and every connection;
    `restart()` serves again on the same port."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.data = path.read_bytes()
        self.seconds = seconds
        self.port = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self._cut = threading.Event()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live.ts"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        stream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                stream.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.send_header("Connection", "close")
                self.end_headers()
                chunk = max(188, len(stream.data) // max(1, round(stream.seconds * 20)))
                started, sent = time.monotonic(), 0
                with contextlib.suppress(OSError):
                    while not stream._cut.is_set():
                        offset = sent % len(stream.data)
                        piece = stream.data[offset:offset + chunk]
                        self.wfile.write(piece)
                        sent += len(piece)
                        due = started + sent / len(stream.data) * stream.seconds
                        stream._cut.wait(max(0.0, due - time.monotonic()))
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def start(self) -> LiveHttpStream:
        self._cut.clear()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def cut(self) -> None:
        assert self._server is not None
        self._cut.set()
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def restart(self) -> None:
        self.start()

    def close(self) -> None:
        if self._server is not None:
            self.cut()


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """http://127.0.0.1:PORT/: accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/stream.ts"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def read_all(reader, timeout_s: float) -> list:
    """Every frame a video reader delivers until its file ends (or `timeout_s`); the reader closed."""
    reader.start()
    frames, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not reader.health().ended:
            frame = reader.next_frame(0.2)
            if frame is not None:
                frames.append(frame)
        while (frame := reader.next_frame(0.0)) is not None:
            frames.append(frame)
    finally:
        reader.close()
    return frames
