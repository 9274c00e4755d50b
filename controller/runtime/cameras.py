"""The cameras' channel on the data directory: a directive file per camera (window clock, frame stride)
written by the controller, and per-window result files written by the cameras."""

from __future__ import annotations

import json

from controller.layout import DataLayout
from protocol.directives import CameraDirective, write_directive


class FileCameraChannel:
    def __init__(self, layout: DataLayout) -> None:
        self.layout = layout

    def publish(self, camera: str, *, t0: float, window_seconds: float, stride: float, window: int,
                stop_after_window: int | None) -> None:
        write_directive(self.layout.directive_file(camera), CameraDirective(
            t0=t0, window_seconds=window_seconds, stride=stride, window=window, stop_after_window=stop_after_window))

    def window_result(self, camera: str, window: int) -> dict | None:
        try:
            return json.loads(self.layout.result_file(camera, window).read_text())
        except (OSError, ValueError):
            return None
