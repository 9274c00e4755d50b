"""The controller -> camera channel: one small JSON file per camera, replaced atomically.

The directive carries the deployment's window clock (t0 and the window length, so every camera cuts
windows at the same instants as the controller) and the frame stride the current plan gives the
camera's inference. Cameras re-read it when its mtime changes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from common.atomic import atomic_write_json


@dataclass(frozen=True)
class CameraDirective:
    t0: float  # wall-clock time (time.time()) at which window 0 starts
    window_seconds: float
    stride: float = 1.0  # infer a 1/stride fraction of frames, evenly spaced (fractional strides allowed);
    # frames not inferred keep their track's last prediction
    window: int = 0  # the window the controller is in when it wrote this
    stop_after_window: int | None = None  # cameras exit after finishing this window (demos, tests)

    def window_at(self, now: float) -> int:
        return int((now - self.t0) // self.window_seconds)


def frame_is_processed(k: int, stride: float) -> bool:
    """Whether frame k (counted from the window start) is inferred under a possibly fractional stride:
    frames where floor(k / stride) steps, so exactly a 1/stride fraction, evenly spaced."""
    if stride <= 1.0:
        return True
    return k == 0 or int(k / stride) != int((k - 1) / stride)


def write_directive(path: Path, directive: CameraDirective) -> None:
    if directive.stride < 1:
        raise ValueError(f"stride must be >= 1, got {directive.stride}")
    atomic_write_json(path, asdict(directive))


def read_directive(path: Path) -> CameraDirective:
    data = json.loads(Path(path).read_text())
    return CameraDirective(**data)


class DirectiveWatcher:
    """Re-reads a directive file only when it changed; keeps the last good one on a bad read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mtime: float | None = None
        self.current: CameraDirective | None = None

    def poll(self) -> CameraDirective | None:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return self.current
        if mtime != self._mtime:
            try:
                self.current = read_directive(self.path)
                self._mtime = mtime
            except (OSError, ValueError, TypeError):
                pass  # a replaced file is never half-written, so this is a bad file: keep the last one
        return self.current
