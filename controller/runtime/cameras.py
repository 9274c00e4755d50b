"""The cameras' channel: the directive per camera (window clock, frame stride, serving version), written
to the data directory as a file and kept in memory for the read-only HTTP endpoint
(controller.runtime.directives_http); per-window result files written by the cameras are read back."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType

from controller.layout import DataLayout
from protocol.directives import CameraDirective, write_directive


class FileCameraChannel:
    def __init__(self, layout: DataLayout, serving_version: Callable[[str], int | None] | None = None) -> None:
        self.layout = layout
        # the version the controller serves for a camera now (the state's record); read without a lock
        self._serving_version = serving_version or (lambda camera: None)
        # Replaced whole at each publish (by the reconcile step): a reader on another thread takes the
        # reference and never waits for the step or sees a half-made update.
        self._snapshot: Mapping[str, CameraDirective] = MappingProxyType({})
        self._write_lock = threading.Lock()

    def publish(self, camera: str, *, t0: float, window_seconds: float, stride: float, window: int,
                stop_after_window: int | None) -> None:
        directive = CameraDirective(t0=t0, window_seconds=window_seconds, stride=stride, window=window,
                                    stop_after_window=stop_after_window,
                                    serving_version=self._serving_version(camera))
        write_directive(self.layout.directive_file(camera), directive)
        with self._write_lock:
            self._snapshot = MappingProxyType({**self._snapshot, camera: directive})

    def directives(self) -> Mapping[str, CameraDirective]:
        """Every camera's last published directive (an immutable snapshot)."""
        return self._snapshot

    def current(self, camera: str) -> CameraDirective | None:
        """The camera's last published directive with the version served now (a publish between two
        plans changes the version, not the directive); None before its first directive."""
        directive = self._snapshot.get(camera)
        if directive is None:
            return None
        return replace(directive, serving_version=self._serving_version(camera))

    def window_result(self, camera: str, window: int) -> dict | None:
        try:
            return json.loads(self.layout.result_file(camera, window).read_text())
        except (OSError, ValueError):
            return None
