"""Reading a video file or a live stream with PyAV (FFmpeg) on a thread of its own: frames decoded,
brought to the source's frame rate (dropped or duplicated by their timestamps), objects detected and
cropped, and handed to the camera at the pace the video was shot (a file plays in real time, a stream
that sends a burst is evened out). A live stream that drops, or stalls past the read timeout, is reopened
with exponential backoff (capped) while the camera is reported down and the gap counted; nothing of this
blocks the camera or any other camera.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sources.detection.config import BackgroundDetectorConfig, OnnxDetectorConfig
from sources.detection.factory import make_detector
from sources.streaming import LiveFrame, SourceHealth

log = logging.getLogger(__name__)

DEFAULT_FPS = 10.0  # a live stream that does not say its rate, with no `fps` configured
RESYNC_SECONDS = 1.0  # a timestamp jump (or falling behind real time) by more than this starts afresh
FIRST_BACKOFF_S = 0.5


class StreamEnded(Exception):
    """A live stream reached its end: for a camera, the same as a dropped connection."""


@dataclass
class RateConverter:
    """How many output frames (at `fps`) a decoded frame at media time t stands for: 0 (dropped: the
    stream is faster), 1, or more (duplicated: slower). Output frame k is due at t_first + k / fps."""

    fps: float
    _next: float | None = None

    def slots(self, t: float) -> int:
        period = 1.0 / self.fps
        if self._next is None or t < self._next - RESYNC_SECONDS or t - self._next > RESYNC_SECONDS:
            self._next = t  # the first frame, or a jump in the timestamps (a restart, a gap)
        count = 0
        while self._next <= t + 1e-6:
            count += 1
            self._next += period
        return count


@dataclass(frozen=True)
class StreamInfo:
    width: int
    height: int
    fps: float | None  # the stream's own rate, when it says
    frames: int | None  # a file's frame count, when its container says


def probe(url: str, timeout_s: float = 10.0) -> StreamInfo:
    """Open a video and read its first video stream's shape; raises av's errors (and ValueError for a
    container without a video stream)."""
    import av

    with av.open(url, timeout=timeout_s) as container:
        if not container.streams.video:
            raise ValueError("it has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return StreamInfo(stream.codec_context.width, stream.codec_context.height,
                          float(rate) if rate else None, stream.frames or None)


@dataclass
class VideoReader:
    """A camera's video source, read on a background thread (StreamingFrameSource)."""

    camera: str
    url: str
    live: bool  # a stream (reconnected when it drops) rather than a file
    crop_size: int
    detector: BackgroundDetectorConfig | OnnxDetectorConfig
    configured_fps: float | None = None
    loop: bool = False
    options: dict[str, str] = field(default_factory=dict)
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    max_backoff_s: float = 30.0
    buffer_seconds: float = 2.0
    stream_fps: float | None = None  # the stream's own rate (probed, or read at connection)
    triton_url: str | None = None  # where an ONNX detector is served (None: run in-process)

    def __post_init__(self) -> None:
        self._frames: queue.Queue[LiveFrame] = queue.Queue(maxsize=max(4, round(self.buffer_seconds * self.fps)))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._health = SourceHealth(stream_fps=self.stream_fps)
        self._down_since: float | None = None
        self._ever_up = False
        self._delivered = 0
        self._last_due: float | None = None
        self._thread: threading.Thread | None = None
        self._opening = False  # av.open is running (a timeout then means no answer at all)
        self._detector = make_detector(self.detector, self.crop_size, self.camera, self.triton_url)

    @property
    def fps(self) -> float:
        return self.configured_fps or self.stream_fps or DEFAULT_FPS

    # -- the camera's side ---------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{self.camera}-video", daemon=True)
            self._thread.start()

    def next_frame(self, timeout: float) -> LiveFrame | None:
        try:
            return self._frames.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def health(self) -> SourceHealth:
        with self._lock:
            h = SourceHealth(**vars(self._health))
            if self._down_since is not None:
                h.gap_seconds += time.time() - self._down_since
            h.missed_frames = round(h.gap_seconds * self.fps)
        h.detector_errors = getattr(self._detector, "errors", 0)
        h.detector_error = getattr(self._detector, "last_error", None)
        return h

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)  # one blocked in FFmpeg (a daemon) is left to its timeout
        if hasattr(self._detector, "close"):
            self._detector.close()

    # -- the reading thread ---------------------------------------------------------------------
    def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            before = self._delivered
            try:
                self._play_once()
                error = None
            except Exception as exc:  # av's errors, a decoder failing mid-stream: the stream is down
                error = self._describe(exc)
            if self._stop.is_set():
                break
            if error is None and not self.live:
                if self.loop:
                    self._detector.reset_tracks()
                    continue
                with self._lock:
                    self._health.ended, self._health.up = True, False
                log.info("%s: %s played to its end", self.camera, self.url)
                break
            if self._delivered > before:
                backoff = FIRST_BACKOFF_S  # it was up: the first retry comes soon
            self._went_down(error or "the stream ended", backoff)
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, self.max_backoff_s)

    def _describe(self, exc: Exception) -> str:
        import av

        if isinstance(exc, av.error.ExitError):  # PyAV's timeout interrupted FFmpeg
            if self._opening:
                return f"no answer within {self.open_timeout_s:g}s (open_timeout_s)"
            return f"no data for {self.read_timeout_s:g}s (read_timeout_s)"
        return f"{type(exc).__name__}: {exc}"

    def _went_down(self, error: str, retry_in: float) -> None:
        with self._lock:
            newly_down = self._down_since is None
            self._health.up = False
            self._health.last_error = error
            if newly_down:
                self._down_since = time.time()
        if newly_down:
            log.warning("%s: camera down: %s (%s); reopening in %.1fs", self.camera, self.url, error, retry_in)
        else:
            log.info("%s: still down: %s (%s); reopening in %.1fs", self.camera, self.url, error, retry_in)

    def _went_up(self, width: int, height: int) -> None:
        with self._lock:
            if self._down_since is not None:
                gap = time.time() - self._down_since
                self._health.gap_seconds += gap
                self._down_since = None
                if self._ever_up:
                    self._health.reconnects += 1
                log.info("%s: camera up again: %s after %.1fs down", self.camera, self.url, gap)
            self._ever_up = True
            self._health.up = True
            self._health.width, self._health.height = width, height

    def _open(self) -> Any:
        import av

        self._opening = True
        options = dict(self.options)
        timeout: tuple[float | None, float] = (self.open_timeout_s, self.read_timeout_s)
        if options.get("rtsp_flags") == "listen":
            # the camera is the RTSP server an encoder pushes to: FFmpeg waits for it `listen_timeout`
            # seconds (without one it fails at once), and an open timeout of PyAV's would cut that wait
            options.setdefault("listen_timeout", str(max(1, round(self.open_timeout_s))))
            timeout = (None, self.read_timeout_s)
        container = av.open(self.url, options=options, timeout=timeout)
        self._opening = False
        if not container.streams.video:
            container.close()
            raise ValueError(f"{self.url} has no video stream")
        return container

    def _play_once(self) -> None:
        """Decode from (re)opening until the end or an error (raised)."""
        container = self._open()
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            if rate:
                with self._lock:
                    self.stream_fps = self._health.stream_fps = float(rate)
            converter = RateConverter(self.fps)
            anchor: tuple[float, float] | None = None  # (wall time, media time) of the first output frame
            count = 0
            for frame in container.decode(stream):
                if self._stop.is_set():
                    return
                media_t = frame.time if frame.time is not None else count / (self.stream_fps or self.fps)
                count += 1
                copies = converter.slots(media_t)
                if copies == 0:
                    continue
                image = frame.to_ndarray(format="rgb24")
                found = self._detector.detect(image)
                self._went_up(image.shape[1], image.shape[0])
                for copy in range(copies):
                    slot_t = media_t + copy / self.fps
                    anchor = self._pace(anchor, slot_t)
                    if anchor is None:
                        return
                    due = anchor[0] + (slot_t - anchor[1])
                    self._deliver(LiveFrame(time=due, index=self._delivered, crops=found.crops,
                                            track_ids=found.track_ids, boxes=found.boxes,
                                            width=image.shape[1], height=image.shape[0]))
            if self.live:
                raise StreamEnded("the stream ended")
        finally:
            container.close()

    def _pace(self, anchor: tuple[float, float] | None, media_t: float) -> tuple[float, float] | None:
        """Wait until the frame at media time t is due (None: stopped); the anchor pairs a wall time with a
        media time. A new connection, a jump in the timestamps or falling behind real time re-anchors (the
        frame is due now: a camera behind its stream catches up, never waits)."""
        now = time.time()
        if anchor is not None:
            due = anchor[0] + (media_t - anchor[1])
            if abs(due - now) <= RESYNC_SECONDS:
                if due > now and self._stop.wait(due - now):
                    return None
                return anchor
        start = now if self._last_due is None else max(now, self._last_due + 1.0 / self.fps)
        if start > now and self._stop.wait(start - now):
            return None
        return (start, media_t)

    def _deliver(self, frame: LiveFrame) -> None:
        self._last_due = frame.time
        while True:
            try:
                self._frames.put_nowait(frame)
                break
            except queue.Full:  # the camera fell behind: the oldest frame goes
                try:
                    self._frames.get_nowait()
                    with self._lock:
                        self._health.dropped_frames += 1
                except queue.Empty:
                    pass
        self._delivered += 1
        with self._lock:
            self._health.frames = self._delivered
