"""Following the controller's directive through its HTTP endpoint (`ekya camera --controller-url`).

A daemon thread polls GET /v1/cameras/<name> every `interval_s`; the frame loop reads the last directive
it got (poll() never blocks on the network). While the controller is away (restarting, unreachable, a
bad answer) the camera keeps its last directive and the thread backs off, up to `max_backoff_s`; until
the first directive it asks every `interval_s` (the controller is starting: window 0 opens a second after
its first directive).
"""

from __future__ import annotations

import logging
import threading

from protocol.directives import CameraDirective, DirectiveError, fetch_directive

log = logging.getLogger(__name__)


class HttpDirectiveWatcher:
    def __init__(self, base_url: str, camera: str, *, interval_s: float = 1.0, max_backoff_s: float = 5.0,
                 timeout_s: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.camera = camera
        self.interval_s = interval_s
        self.max_backoff_s = max(max_backoff_s, interval_s)
        self.timeout_s = timeout_s
        self.current: CameraDirective | None = None
        self.fetches = 0  # answered requests
        self.failures = 0  # failed ones (the controller away, an error answer)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def source(self) -> str:
        return f"{self.base_url}/v1/cameras/{self.camera}"

    def poll(self) -> CameraDirective | None:
        """The latest directive (None before the first answer); starts the polling thread on first use."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(target=self._run, name=f"{self.camera}-directive",
                                                    daemon=True)
                    self._thread.start()
        return self.current

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1.0)

    def _run(self) -> None:
        backoff = self.interval_s
        while not self._stop.is_set():
            try:
                self.current = fetch_directive(self.base_url, self.camera, self.timeout_s)
                self.fetches += 1
                backoff = self.interval_s
                self._stop.wait(self.interval_s)
            except (OSError, DirectiveError) as exc:
                self.failures += 1
                # one warning when the controller goes away, not one a second while it stays away
                level = logging.WARNING if backoff == self.interval_s else logging.DEBUG
                log.log(level, "%s: directive from %s failed (%s); keeping the last one, retrying in %.1fs",
                        self.camera, self.base_url, exc, backoff)
                self._stop.wait(backoff)
                if self.current is not None:  # (before the first one: the controller is starting, ask each interval)
                    backoff = min(backoff * 2, self.max_backoff_s)
