"""When a client calls a server again after failures, and when it drops its channel for a fresh one.

Shared by the camera's inference calls (camera/client.py) and its ONNX detector's calls
(sources/detection/onnx_detector.py): a failed call waits `first_s`, doubling up to `max_s`, before the
next one; after `reconnect_after` failures in a row the caller should connect afresh, because a gRPC
channel whose server went away reconnects on its own backoff, which grows to minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0
RECONNECT_AFTER_FAILURES = 2


@dataclass
class CallBackoff:
    first_s: float = FIRST_BACKOFF_S
    max_s: float = MAX_BACKOFF_S
    reconnect_after: int = RECONNECT_AFTER_FAILURES
    failures_in_a_row: int = 0
    delay_s: float = field(init=False)  # the wait after the next failure
    _retry_at: float = 0.0

    def __post_init__(self) -> None:
        self.delay_s = self.first_s

    def ready(self, now: float) -> bool:
        """Whether a call may go out now (False: still waiting after a failure)."""
        return now >= self._retry_at

    def failed(self, now: float) -> bool:
        """Record a failed call; True when the caller should drop its channel and connect afresh."""
        self.failures_in_a_row += 1
        self._retry_at = now + self.delay_s
        self.delay_s = min(self.delay_s * 2, self.max_s)
        return self.failures_in_a_row >= self.reconnect_after

    def succeeded(self) -> None:
        self.failures_in_a_row = 0
        self.delay_s = self.first_s
        self._retry_at = 0.0
