"""The camera client: streams a camera's frames to Triton in real time and measures what it gets.

Per frame (at the camera's fps, on the deployment's window clock): if the frame is due under the
published stride and we are not running late, its object crops are sent to the camera's Triton model
over gRPC, with the request id `<camera>/w<window>/f<frame>` (Triton samples the requests it serves for
golden labelling by a hash of that id, so the same frames are sampled on every run); otherwise the frame
is skipped and every object in it keeps its track's last prediction (an object never seen in a processed
frame is a miss). At the end of each window it writes the window's result, with its accuracy where the
source has ground truth, into its own results directory (protocol/camera_results.py).
The camera shares nothing with the controller but two network endpoints: Triton's gRPC URL and the
controller's directive endpoint (camera/directives.py). A Triton outage costs skipped frames, never the
client: calls are retried with backoff, and after a few failures in a row the channel is dropped and a
fresh one connected to the same URL (a restarted server comes back on its ports; common/backoff.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from camera.triton import InferenceClient
from common.backoff import CallBackoff
from protocol import defaults
from protocol.camera_results import CameraResults
from protocol.directives import CameraDirective, frame_is_processed
from protocol.model_input import to_model_input
from sources import FrameSource, StreamingFrameSource
from trainer.streams.base import WindowData, score_tracks

log = logging.getLogger(__name__)

LIVE_EVERY_SECONDS = 2.0


def request_id(camera: str, window: int, frame: int) -> str:
    """The id a camera's request carries: its frame (counted from the window's start) in its window."""
    return f"{camera}/w{window}/f{frame}"


class DirectiveSource(Protocol):
    """Where the camera's directive comes from: the controller's endpoint (camera.directives.
    HttpDirectiveWatcher). poll() is called per frame and must not block."""

    @property
    def source(self) -> str: ...

    def poll(self) -> CameraDirective | None: ...

    def close(self) -> None: ...


@dataclass
class WindowStats:
    camera: str
    window: int
    frames: int = 0
    processed_frames: int = 0
    late_frames: int = 0
    crops: int = 0
    requests: int = 0
    failed_requests: int = 0
    shed_requests: int = 0  # rejected by the model's bounded queue (not failures: the server is up)
    stride_frames: Counter = field(default_factory=Counter)  # stride -> frames under it
    versions: Counter = field(default_factory=Counter)  # model version -> requests it answered
    accuracy: float | None = None
    inferred_crops: int = 0  # crops answered by Triton (a request carries one frame's crops)
    latencies_ms: list[float] = field(default_factory=list)  # answered requests, round trip

    def latency_ms(self, q: float) -> float | None:
        return round(float(np.percentile(self.latencies_ms, q)), 2) if self.latencies_ms else None

    def to_dict(self) -> dict:
        return {
            "camera": self.camera, "window": self.window, "accuracy": self.accuracy, "frames": self.frames,
            "processed_frames": self.processed_frames, "late_frames": self.late_frames, "crops": self.crops,
            "requests": self.requests, "failed_requests": self.failed_requests,
            "shed_requests": self.shed_requests,
            "inferred_crops": self.inferred_crops,
            "latency_ms_p50": self.latency_ms(50), "latency_ms_p99": self.latency_ms(99),
            "stride_frames": {str(k): v for k, v in sorted(self.stride_frames.items())},
            "model_versions": {str(k): v for k, v in sorted(self.versions.items())},
        }


class _Prefetch:
    """fn(*args) on a daemon thread: a camera that stops does not wait for frames it will never stream."""

    def __init__(self, name: str, fn: Callable[..., WindowData], *args: object) -> None:
        self._value: WindowData | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., WindowData], args: tuple) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to whoever asks for the result
            self._error = exc

    def result(self) -> WindowData:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


class CameraClient:
    def __init__(
        self,
        name: str,
        source: FrameSource | StreamingFrameSource,
        triton_url: str,
        directives: DirectiveSource,
        results: CameraResults,
        *,
        request_timeout_s: float = defaults.REQUEST_TIMEOUT_S,
        model_name: str | None = None,
    ) -> None:
        self.name = name
        self.model_name = model_name or name
        self.source = source
        self.triton_url = triton_url
        self.watcher = directives
        self.results = results
        self.request_timeout_s = request_timeout_s
        self._client: InferenceClient | None = None
        self._backoff = CallBackoff()
        self.totals = {"requests": 0, "failed_requests": 0, "shed_requests": 0, "reconnects": 0}

    # -- Triton ----------------------------------------------------------------------------------
    def _triton(self) -> InferenceClient:
        if self._client is None:
            self._client = InferenceClient(self.triton_url, timeout_s=self.request_timeout_s)
        return self._client

    def _reconnect(self) -> None:
        """Drop the channel; the next request connects afresh."""
        client, self._client = self._client, None
        self.totals["reconnects"] += 1
        if client is not None:
            try:
                client.close()
            except Exception:  # a channel to a dead server may complain on close: it is gone either way
                log.debug("%s: closing the old channel failed", self.name, exc_info=True)

    def _infer(self, images: np.ndarray, stats: WindowStats, request: str = "") -> np.ndarray | None:
        if not self._backoff.ready(time.monotonic()):
            return None
        stats.requests += 1
        self.totals["requests"] += 1
        try:
            sent = time.perf_counter()
            logits, version = self._triton().infer_with_version(self.model_name, to_model_input(images),
                                                               request_id=request)
            stats.latencies_ms.append((time.perf_counter() - sent) * 1000.0)
        except Exception as exc:  # server down, restarting, model not loaded: retry with backoff
            if is_shed(exc):  # Triton's queue policy turned it away: the server is up, and busy
                stats.shed_requests += 1
                self.totals["shed_requests"] += 1
                log.warning("%s: request shed by Triton's queue (%s)", self.name, exc)
                return None
            stats.failed_requests += 1
            self.totals["failed_requests"] += 1
            log.warning("%s: inference failed (%s); retrying in %.1fs", self.name, exc, self._backoff.delay_s)
            if self._backoff.failed(time.monotonic()):
                self._reconnect()
            return None
        self._backoff.succeeded()
        stats.versions[version] += 1
        stats.inferred_crops += len(images)
        return np.argmax(logits, axis=1)

    # -- main loop -------------------------------------------------------------------------------
    def wait_for_directive(self, stop: threading.Event, timeout_s: float = 60.0) -> CameraDirective:
        deadline = time.time() + timeout_s
        while not stop.is_set():
            directive = self.watcher.poll()
            if directive is not None:
                return directive
            if time.time() > deadline:
                raise TimeoutError(f"{self.name}: no directive from {self.watcher.source} after {timeout_s:.0f}s; "
                                   "is the controller running?")
            stop.wait(0.2)
        raise InterruptedError

    def run(self, stop: threading.Event | None = None, max_windows: int | None = None, *,
            first_window_seconds: float | None = None, directive_timeout_s: float = 60.0) -> list[WindowStats]:
        """Stream windows until stopped. With `first_window_seconds` (the configured window length), the
        first window's frames are made while waiting for the controller's directive (window 0, or the
        current window of a directive already there): a camera started with its controller then has its
        frames ready when the controller's models serve, instead of rendering through its first window."""
        stop = stop or threading.Event()
        if isinstance(self.source, StreamingFrameSource):  # frames as they arrive (camera/streaming.py)
            from camera.streaming import StreamingRun

            return StreamingRun(self, self.source).run(stop, max_windows, directive_timeout_s)
        # The next window's frames are made while this one streams: a synthetic window at 224 px takes
        # tens of seconds to render, which would otherwise be spent at the window's start, frames dropped.
        upcoming: dict[tuple[int, float], _Prefetch] = {}
        if first_window_seconds is not None:
            known = self.watcher.poll()
            first = 0 if known is None else max(0, known.window_at(time.time()))
            upcoming[(first, first_window_seconds)] = _Prefetch(
                f"{self.name}-frames", self.source.window, first, first_window_seconds)
        InferenceClient.preload()  # while the controller starts, not at window 0's first frames (they'd be late)
        directive = self.wait_for_directive(stop, directive_timeout_s)
        # The channel's first connection (up to seconds on a cold, busy machine, whatever the request
        # deadline) is made now, not at window 0's first frame: the controller opens window 0 a second after
        # its first directive.
        self._triton().server_ready()
        window = max(0, directive.window_at(time.time()))
        done: list[WindowStats] = []
        while not stop.is_set():
            seconds = directive.window_seconds
            ready = upcoming.pop((window, seconds), None)
            data = ready.result() if ready is not None else None
            upcoming = {(window + 1, seconds): _Prefetch(
                f"{self.name}-frames", self.source.window, window + 1, seconds)}
            done.append(self.run_window(window, stop, data))
            directive = self.watcher.poll() or directive
            if directive.stop_after_window is not None and window >= directive.stop_after_window:
                break
            if max_windows is not None and len(done) >= max_windows:
                break
            window = max(window + 1, directive.window_at(time.time()))
        if self._client is not None:
            self._client.close()
        self.watcher.close()
        return done

    def run_window(self, window: int, stop: threading.Event, data: WindowData | None = None) -> WindowStats:
        """Stream one window; `data` is its frames when already made (else they are made now)."""
        directive = self.watcher.poll()
        assert directive is not None
        assert not isinstance(self.source, StreamingFrameSource)
        fps = self.source.fps
        per_window = self.source.frames_per_window(directive.window_seconds)
        if data is None:
            data = self.source.window(window, directive.window_seconds)
        first_frame = window * per_window
        crops_of = _group_by_frame(data.frame_index - first_frame, per_window)
        predictions = np.full(len(data), -1, dtype=np.int64)
        processed = np.zeros(len(data), dtype=bool)
        stats = WindowStats(self.name, window)
        last_live = 0.0
        frame_period = 1.0 / fps
        window_start = directive.t0 + window * directive.window_seconds
        for k in range(per_window):
            if stop.is_set():
                break
            due = window_start + k * frame_period
            delay = due - time.time()
            if delay > 0 and stop.wait(delay):
                break
            directive = self.watcher.poll() or directive
            stats.frames += 1
            stats.stride_frames[round(directive.stride, 2)] += 1
            idx = crops_of[k]
            late = time.time() - due > frame_period  # a real camera drops frames it cannot keep up with
            stats.late_frames += int(late)
            if not late and frame_is_processed(k, directive.stride):
                if len(idx):
                    labels = self._infer(data.images[idx], stats, request_id(self.name, window, k))
                    if labels is not None:
                        predictions[idx] = labels
                        processed[idx] = True
                        stats.processed_frames += 1
                else:
                    stats.processed_frames += 1
            now = time.time()
            if now - last_live >= LIVE_EVERY_SECONDS:
                self._write_live(stats, directive)
                last_live = now
        stats.crops = int(len(data))
        if np.any(data.labels >= 0) and not stop.is_set():
            stats.accuracy = score_tracks(data.track_ids, data.frame_index, data.labels, predictions, processed)
        if not stop.is_set():  # a window cut short by a stop is not a measurement
            self.results.write_window(window, stats.to_dict())
        self._write_live(stats, directive)
        log.info("%s: window %d accuracy %s, %d/%d frames processed, %d failed requests", self.name, window,
                 "n/a" if stats.accuracy is None else f"{stats.accuracy:.3f}", stats.processed_frames,
                 stats.frames, stats.failed_requests)
        return stats

    def _write_live(self, stats: WindowStats, directive: CameraDirective) -> None:
        self.results.write_live({
            "camera": self.name, "window": stats.window, "stride": directive.stride, "time": time.time(),
            "requests_total": self.totals["requests"], "failed_requests_total": self.totals["failed_requests"],
            "shed_requests_total": self.totals["shed_requests"],
            "window_requests": stats.requests, "window_failed_requests": stats.failed_requests,
        })


# Triton's answers to a request its model's queue policy turned away (timed out waiting, or a full queue)
SHED_MESSAGES = ("Request timeout expired", "Exceeds maximum queue size")


def is_shed(exc: BaseException) -> bool:
    return any(message in str(exc) for message in SHED_MESSAGES)


def _group_by_frame(local_frame: np.ndarray, frames: int) -> list[np.ndarray]:
    """Crop indices per frame 0..frames-1 (crops outside the window are ignored)."""
    order = np.argsort(local_frame, kind="stable")
    sorted_frames = local_frame[order]
    bounds = np.searchsorted(sorted_frames, np.arange(frames + 1))
    return [order[bounds[k]:bounds[k + 1]] for k in range(frames)]
