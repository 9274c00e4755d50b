"""The camera client's path for sources that stream (sources/streaming.py: live video, a video file played
in real time): frames are taken as they arrive and grouped into the window clock's windows by the time
each was captured, so the camera never needs a window ahead. Within a window, frame k (counted from the
window's start at the source's fps) is inferred when the stride says so and it is not late, as on the
per-window path; a skipped frame's objects keep their track's last prediction.

The source's health (up or down, reconnects, the gap, frames dropped) goes into every window's result and
the live counters, and its changes into the log: a camera whose stream is down goes on closing its windows
on the clock, with no frames, until the stream is back.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from protocol.directives import CameraDirective, frame_is_processed
from sources.streaming import LiveFrame, SourceHealth, StreamingFrameSource

if TYPE_CHECKING:
    from camera.client import CameraClient, WindowStats

log = logging.getLogger(__name__)

POLL_S = 0.25  # how often a camera waiting for frames looks at the clock and the stop flag


def health_delta(now: SourceHealth, before: SourceHealth) -> dict[str, object]:
    """A window's share of the source's counters, beside the totals."""
    return {
        "up": now.up, "ended": now.ended, "last_error": now.last_error,
        "width": now.width, "height": now.height, "stream_fps": now.stream_fps,
        "frames": now.frames - before.frames,
        "reconnects": now.reconnects - before.reconnects,
        "gap_seconds": round(now.gap_seconds - before.gap_seconds, 3),
        "missed_frames": max(0, now.missed_frames - before.missed_frames),
        "dropped_frames": now.dropped_frames - before.dropped_frames,
        "detector_errors": now.detector_errors - before.detector_errors,
        "totals": now.to_dict(),
    }


class StreamingRun:
    """One camera's windows over a streaming source (CameraClient.run hands over to it)."""

    def __init__(self, client: CameraClient, source: StreamingFrameSource) -> None:
        self.client = client
        self.source = source
        self._pending: LiveFrame | None = None  # a frame of the next window, read while closing this one
        self._last_health = SourceHealth()
        self._was_up: bool | None = None
        self._last_predictions: dict[int, int] = {}  # track id -> its last prediction

    def run(self, stop: threading.Event, max_windows: int | None, directive_timeout_s: float) -> list[WindowStats]:
        from camera.triton import InferenceClient

        client = self.client
        self.source.start()  # connecting while the controller starts
        InferenceClient.preload()
        try:
            directive = client.wait_for_directive(stop, directive_timeout_s)
            client._triton().server_ready()
            window = max(0, directive.window_at(time.time()))
            done: list[WindowStats] = []
            while not stop.is_set():
                stats = self.run_window(window, stop)
                done.append(stats)
                directive = client.watcher.poll() or directive
                if self.source.health().ended:
                    log.info("%s: the video ended; the camera stops", client.name)
                    break
                if directive.stop_after_window is not None and window >= directive.stop_after_window:
                    break
                if max_windows is not None and len(done) >= max_windows:
                    break
                window = max(window + 1, directive.window_at(time.time()))
            return done
        finally:
            self.source.close()
            if client._client is not None:
                client._client.close()
            client.watcher.close()

    def run_window(self, window: int, stop: threading.Event) -> WindowStats:
        from camera.client import WindowStats, request_id

        client = self.client
        directive = client.watcher.poll()
        assert directive is not None
        stats = WindowStats(client.name, window)
        start = directive.t0 + window * directive.window_seconds
        end = start + directive.window_seconds
        last_live = 0.0
        covered = 0  # crops with a prediction: inferred, or kept from their track's last inferred frame
        while not stop.is_set():
            frame, self._pending = self._pending, None
            if frame is None:
                frame = self.source.next_frame(min(POLL_S, max(0.0, end - time.time())))
            if frame is None:
                self._note_health(stats, directive)
                if time.time() >= end or self.source.health().ended:
                    break
                continue
            if frame.time < start:
                continue  # before this window (read while the camera waited for its directive)
            if frame.time >= end:
                self._pending = frame
                break
            directive = client.watcher.poll() or directive
            fps = self.source.fps
            k = int((frame.time - start) * fps)
            stats.frames += 1
            stats.crops += len(frame.crops)
            stats.stride_frames[round(directive.stride, 2)] += 1
            late = time.time() - frame.time > 1.0 / fps  # waited too long: a real camera drops it
            stats.late_frames += int(late)
            if not late and frame_is_processed(k, directive.stride):
                if len(frame.crops):
                    labels = client._infer(frame.crops, stats, request_id(client.name, window, k))
                    if labels is not None:
                        self._last_predictions.update(zip(frame.track_ids.tolist(), labels.tolist()))
                        stats.processed_frames += 1
                else:
                    stats.processed_frames += 1
            covered += sum(int(t) in self._last_predictions for t in frame.track_ids.tolist())
            now = time.time()
            if now - last_live >= 2.0:
                self._write_live(stats, directive)
                last_live = now
        health = self.source.health()
        result = {**stats.to_dict(), "predicted_crops": covered, "source": health_delta(health, self._last_health)}
        self._last_health = health
        if not stop.is_set():  # a window cut short by a stop is not a measurement
            client.results.write_window(window, result)
        self._write_live(stats, directive)
        log.info("%s: window %d, %d/%d frames processed, %d crops, %d failed requests; source %s%s", client.name,
                 window, stats.processed_frames, stats.frames, stats.crops, stats.failed_requests,
                 "up" if health.up else "DOWN", f" ({health.last_error})" if not health.up and health.last_error else "")
        return stats

    def _note_health(self, stats: WindowStats, directive: CameraDirective) -> None:
        """Live counters while no frames come (a stream that is down), at most every 2 s."""
        now = time.time()
        if now - getattr(self, "_last_idle_live", 0.0) >= 2.0:
            self._last_idle_live = now
            self._write_live(stats, directive)

    def _write_live(self, stats: WindowStats, directive: CameraDirective) -> None:
        health = self.source.health()
        client = self.client
        client.results.write_live({
            "camera": client.name, "window": stats.window, "stride": directive.stride, "time": time.time(),
            "requests_total": client.totals["requests"], "failed_requests_total": client.totals["failed_requests"],
            "shed_requests_total": client.totals["shed_requests"],
            "window_requests": stats.requests, "window_failed_requests": stats.failed_requests,
            "source_up": health.up, "source": health.to_dict(),
        })

