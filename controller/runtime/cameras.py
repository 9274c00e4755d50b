"""The cameras' channel: the directive per camera (window clock, frame stride, serving version), kept in
memory for the read-only HTTP endpoint (controller.runtime.directives_http), the only way cameras learn it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType

from protocol.directives import CameraDirective


class DirectiveChannel:
    def __init__(self, serving_version: Callable[[str], int | None] | None = None) -> None:
        # the version the controller serves for a camera now (the state's record); read without a lock
        self._serving_version = serving_version or (lambda camera: None)
        # Replaced whole at each publish (by the reconcile step): a reader on another thread takes the
        # reference and never waits for the step or sees a half-made update.
        self._snapshot: Mapping[str, CameraDirective] = MappingProxyType({})
        self._write_lock = threading.Lock()

    def publish(self, camera: str, *, t0: float, window_seconds: float, stride: float, window: int,
                stop_after_window: int | None) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        directive = CameraDirective(t0=t0, window_seconds=window_seconds, stride=stride, window=window,
                                    stop_after_window=stop_after_window,
                                    serving_version=self._serving_version(camera))
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
