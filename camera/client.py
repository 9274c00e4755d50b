"""The camera client: streams a camera's frames to Triton in real time and measures what it gets.

Per frame (at the camera's fps, on the deployment's window clock):
- if the frame is due under the published stride and we are not running late, its object crops are
  sent to the camera's Triton model over gRPC; otherwise the frame is skipped and every object in it
  keeps its track's last prediction (an object never seen in a processed frame is a miss);
- a sample of frames (label_sampling_rate) is spooled for golden labelling and retraining.
At the end of each window it writes the window's accuracy (where the source has ground truth).
A Triton outage costs skipped frames, never the client: calls are retried with backoff, and after
RECONNECT_AFTER_FAILURES failures in a row the channel is dropped and the endpoint resolved afresh (a
restarted server: the embedded one comes back on its configured ports, server.json says where).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from camera.triton import InferenceClient
from common.atomic import atomic_write_json
from protocol import defaults
from protocol.directives import CameraDirective, DirectiveWatcher, frame_is_processed
from protocol.files import CameraFiles
from protocol.model_input import to_model_input
from protocol.spool import SPOOL_CHUNK_SECONDS, Spool
from sources import FrameSource
from trainer.streams.base import WindowData, score_tracks

log = logging.getLogger(__name__)

LIVE_EVERY_SECONDS = 2.0
# A gRPC channel whose server went away reconnects on its own backoff (it grows to minutes): a fresh one,
# to the endpoint as resolved now, is connected at the next request instead.
RECONNECT_AFTER_FAILURES = 2
MAX_BACKOFF_S = 2.0


class DirectiveSource(Protocol):
    """Where the camera's directive comes from: the file (DirectiveWatcher) or the controller's endpoint
    (camera.directives.HttpDirectiveWatcher). poll() is called per frame and must not block."""

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
    spooled_crops: int = 0
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
            "spooled_crops": self.spooled_crops, "inferred_crops": self.inferred_crops,
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
        source: FrameSource,
        layout: CameraFiles,
        triton_url: str | Callable[[], str],
        *,
        label_sampling_rate: float = defaults.LABEL_SAMPLING_RATE,
        spool_budget_bytes: int = 256 * 2**20,
        request_timeout_s: float = defaults.REQUEST_TIMEOUT_S,
        model_name: str | None = None,
        directives: DirectiveSource | None = None,
    ) -> None:
        self.name = name
        self.model_name = model_name or name
        self.source = source
        self.layout = layout
        # a callable is resolved once the controller's directive is there, and again at each reconnect
        self._resolve: Callable[[], str] = triton_url if callable(triton_url) else (lambda: triton_url)
        self._url: str | None = None
        self.sampling_rate = label_sampling_rate
        self.request_timeout_s = request_timeout_s
        self.spool = Spool(layout, name, spool_budget_bytes)
        # the controller's HTTP endpoint (HttpDirectiveWatcher) or, by default, the directive file
        self.watcher: DirectiveSource = directives or DirectiveWatcher(layout.directive_file(name))
        self._client: InferenceClient | None = None
        self._retry_at = 0.0
        self._backoff = 0.1
        self._failures_in_a_row = 0
        self.totals = {"requests": 0, "failed_requests": 0, "reconnects": 0}

    # -- Triton ----------------------------------------------------------------------------------
    @property
    def triton_url(self) -> str:
        if self._url is None:
            self._url = self._resolve()
        return self._url

    def _triton(self) -> InferenceClient:
        if self._client is None:
            self._client = InferenceClient(self.triton_url, timeout_s=self.request_timeout_s)
        return self._client

    def _reconnect(self) -> None:
        """Drop the channel; the next request resolves the endpoint again and connects afresh."""
        client, self._client, self._url = self._client, None, None
        self.totals["reconnects"] += 1
        if client is not None:
            try:
                client.close()
            except Exception:  # a channel to a dead server may complain on close: it is gone either way
                log.debug("%s: closing the old channel failed", self.name, exc_info=True)

    def _infer(self, images: np.ndarray, stats: WindowStats) -> np.ndarray | None:
        if time.time() < self._retry_at:
            return None
        stats.requests += 1
        self.totals["requests"] += 1
        try:
            sent = time.perf_counter()
            logits, version = self._triton().infer_with_version(self.model_name, to_model_input(images))
            stats.latencies_ms.append((time.perf_counter() - sent) * 1000.0)
        except Exception as exc:  # server down, restarting, model not loaded: retry with backoff
            stats.failed_requests += 1
            self.totals["failed_requests"] += 1
            self._failures_in_a_row += 1
            log.warning("%s: inference failed (%s); retrying in %.1fs", self.name, exc, self._backoff)
            self._retry_at = time.time() + self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
            if self._failures_in_a_row >= RECONNECT_AFTER_FAILURES:
                self._reconnect()
            return None
        self._backoff = 0.1
        self._failures_in_a_row = 0
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
        _ = self.triton_url  # resolved now: a failure to find the server is an error, not a failed request
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
        fps = self.source.fps
        per_window = self.source.frames_per_window(directive.window_seconds)
        if data is None:
            data = self.source.window(window, directive.window_seconds)
        first_frame = window * per_window
        crops_of = _group_by_frame(data.frame_index - first_frame, per_window)
        predictions = np.full(len(data), -1, dtype=np.int64)
        processed = np.zeros(len(data), dtype=bool)
        stats = WindowStats(self.name, window)
        rng = np.random.default_rng([zlib.crc32(self.name.encode()), window])  # same sample every run
        spool_buffer: list[np.ndarray] = []
        chunk_index, last_flush, last_live = 0, time.time(), 0.0
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
                    labels = self._infer(data.images[idx], stats)
                    if labels is not None:
                        predictions[idx] = labels
                        processed[idx] = True
                        stats.processed_frames += 1
                else:
                    stats.processed_frames += 1
            if len(idx) and rng.random() < self.sampling_rate:
                spool_buffer.append(idx)
            now = time.time()
            if spool_buffer and now - last_flush >= SPOOL_CHUNK_SECONDS:
                stats.spooled_crops += self._flush(data, spool_buffer, window, chunk_index)
                chunk_index += 1
                spool_buffer, last_flush = [], now
            if now - last_live >= LIVE_EVERY_SECONDS:
                self._write_live(stats, directive)
                last_live = now
        if spool_buffer:
            stats.spooled_crops += self._flush(data, spool_buffer, window, chunk_index)
        stats.crops = int(len(data))
        if np.any(data.labels >= 0) and not stop.is_set():
            stats.accuracy = score_tracks(data.track_ids, data.frame_index, data.labels, predictions, processed)
        if not stop.is_set():  # a window cut short by a stop is not a measurement
            atomic_write_json(self.layout.result_file(self.name, window), stats.to_dict())
        self._write_live(stats, directive)
        log.info("%s: window %d accuracy %s, %d/%d frames processed, %d failed requests", self.name, window,
                 "n/a" if stats.accuracy is None else f"{stats.accuracy:.3f}", stats.processed_frames,
                 stats.frames, stats.failed_requests)
        return stats

    def _flush(self, data: WindowData, buffer: list[np.ndarray], window: int, index: int) -> int:
        chosen = np.concatenate(buffer)
        self.spool.write_chunk(window, index, data.take(chosen))
        return int(len(chosen))

    def _write_live(self, stats: WindowStats, directive: CameraDirective) -> None:
        atomic_write_json(self.layout.live_file(self.name), {
            "camera": self.name, "window": stats.window, "stride": directive.stride, "time": time.time(),
            "requests_total": self.totals["requests"], "failed_requests_total": self.totals["failed_requests"],
            "window_requests": stats.requests, "window_failed_requests": stats.failed_requests,
        })


def _group_by_frame(local_frame: np.ndarray, frames: int) -> list[np.ndarray]:
    """Crop indices per frame 0..frames-1 (crops outside the window are ignored)."""
    order = np.argsort(local_frame, kind="stable")
    sorted_frames = local_frame[order]
    bounds = np.searchsorted(sorted_frames, np.arange(frames + 1))
    return [order[bounds[k]:bounds[k + 1]] for k in range(frames)]
