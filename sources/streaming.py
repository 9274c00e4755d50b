"""Sources that deliver frames as they arrive (live streams, video files played in real time), as opposed
to the per-window sources (synthetic, folder) whose whole window can be made ahead of time.

The camera client (camera/streaming.py) groups a streaming source's frames into the window clock's
windows by the time each frame was captured; it never needs a window ahead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class LiveFrame:
    """One frame's objects: crops at the edge model's input size, their tracks and boxes."""

    time: float  # wall-clock seconds (time.time()) at which the frame was captured / due
    index: int  # frames delivered by this source so far (0, 1, ...)
    crops: np.ndarray  # [N,S,S,3] uint8 RGB
    track_ids: np.ndarray  # [N] int64: an object keeps its id over consecutive frames
    boxes: np.ndarray  # [N,4] int64 x0, y0, x1, y1 in the frame's pixels
    width: int
    height: int


@dataclass
class SourceHealth:
    """Whether the stream delivers, and what its outages cost so far (counters only grow)."""

    up: bool = False
    frames: int = 0  # delivered to the camera
    reconnects: int = 0  # times the stream came back after it dropped
    gap_seconds: float = 0.0  # time down (not connected, or connected without frames), outages so far
    missed_frames: int = 0  # frames the stream would have delivered meanwhile (gap x fps)
    dropped_frames: int = 0  # delivered frames the camera did not take in time (a full buffer)
    last_error: str | None = None
    ended: bool = False  # a file without `loop` played to its end
    width: int = 0
    height: int = 0
    stream_fps: float | None = None  # the stream's own rate, when it says
    detector_errors: int = 0  # frames the detector could not run on (an ONNX detector's Triton down, say)
    detector_error: str | None = None  # the last such error

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["gap_seconds"] = round(self.gap_seconds, 3)
        return out


@runtime_checkable
class StreamingFrameSource(Protocol):
    """A camera's frames as they come. `start` begins reading (a background thread); `next_frame` waits
    at most `timeout` seconds and returns None when no frame came (a stream that is down, or ended)."""

    fps: float

    def start(self) -> None: ...

    def next_frame(self, timeout: float) -> LiveFrame | None: ...

    def health(self) -> SourceHealth: ...

    def close(self) -> None: ...
