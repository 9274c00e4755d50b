"""Supervision of the deployment's Triton: a dead embedded server is restarted, on the same configured ports.

`TritonSupervisor.check` runs every second (an APScheduler job of its own, controller/service.py: not the
reconcile step, whose lock is held for seconds while a window closes or is planned, and every second of
an outage is a second of failed camera requests). It reports `ekya_triton_up`; for an embedded server
that died (its process exited, or it stopped answering its liveness check for `hung_after_s`), it kills
what is left of it (backend stubs, shared memory), waits for its ports to be free, starts a new one there
with every model that has versions (the version policy serves the newest on disk, as before), saves
server.json and counts the restart. Consecutive failed restarts back off exponentially (1 s doubling to
30 s); a server that stayed up for `stable_s` starts the backoff afresh. An external Triton is only
watched, never restarted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.metrics import ControllerMetrics
from controller.triton.repository import ModelRepository
from controller.triton.runtime import TritonRuntime
from controller.triton.server import TritonPorts, TritonServer, TritonStartError, http_ok, wait_for_ports

log = logging.getLogger("controller")


@dataclass
class Backoff:
    """Delays between restart attempts: initial_s, doubling, at most cap_s."""

    initial_s: float = 1.0
    cap_s: float = 30.0

    def __post_init__(self) -> None:
        self._next = self.initial_s

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2.0, self.cap_s)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s


@dataclass(frozen=True)
class EmbeddedTriton:
    """How the deployment's embedded server is started: always on its configured ports."""

    repository: ModelRepository
    work_dir: Path
    admin_key: str
    address: str
    ports: TritonPorts
    info_file: Path
    runtime: TritonRuntime | None = None
    bind_address: str | None = None  # the inference ports' (network.expose: all interfaces); None: address
    port_wait_s: float = 30.0

    def start(self) -> TritonServer:
        if not wait_for_ports(self.ports, self.bind_address or self.address, self.port_wait_s):
            raise TritonStartError(f"Triton's ports {self.ports} on {self.address} are still in use after "
                                   f"{self.port_wait_s:.0f}s")
        names = self.repository.loadable()
        server = TritonServer(self.repository.root, self.work_dir, admin_key=self.admin_key, address=self.address,
                              grpc_port=self.ports.grpc, http_port=self.ports.http, metrics_port=self.ports.metrics,
                              bind_address=self.bind_address, load_models=names, runtime=self.runtime)
        server.start()
        server.save_info(self.info_file)
        return server


class TritonSupervisor:
    def __init__(self, metrics: ControllerMetrics, *, server: TritonServer | None = None,
                 embedded: EmbeddedTriton | None = None, probe: Callable[[], bool] | None = None,
                 after_restart: Callable[[TritonServer], None] | None = None, backoff: Backoff | None = None,
                 stable_s: float = 60.0, hung_after_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if (server is None) != (embedded is None):
            raise ValueError("an embedded server is supervised with how to start it again")
        if server is None and probe is None:
            raise ValueError("an external Triton needs a probe")
        self.metrics = metrics
        self.server = server
        self.embedded = embedded
        self._probe = probe
        self.after_restart = after_restart
        self.backoff = backoff or Backoff()
        self.stable_s = stable_s
        self.hung_after_s = hung_after_s
        self.clock = clock
        self.restarts = 0  # successful restarts
        self.attempts = 0  # restart attempts, failed ones included
        now = clock()
        self._up_since: float | None = now
        self._unanswered_since: float | None = None
        self._next_attempt: float | None = None
        metrics.set_triton_up(True)

    def check(self) -> None:
        """One look (the 1-s job): report whether Triton is up; restart a dead embedded one when due."""
        now = self.clock()
        up = self._is_up(now)
        self.metrics.set_triton_up(up)
        if up:
            if self._up_since is None:
                self._up_since = now
            elif now - self._up_since >= self.stable_s:
                self.backoff.reset()
            self._next_attempt = None
            return
        self._up_since = None
        if self.server is None or self.embedded is None:
            return  # an external Triton: watched, never restarted
        if self._next_attempt is None:
            delay = self.backoff.next()
            log.error("Triton (pid %d) is down; restarting it in %.0fs on %s", self.server.info.pid if
                      self.server.info else -1, delay, self.embedded.ports)
            self._next_attempt = now + delay
        if now >= self._next_attempt:
            self._restart()

    def _is_up(self, now: float) -> bool:
        if self.server is None:
            assert self._probe is not None
            return self._probe()
        if not self.server.is_running():
            return False
        if self._probe is not None:
            answered = self._probe()
        else:
            answered = self.server.info is not None and http_ok(f"{self.server.info.http_url}/v2/health/live",
                                                                 timeout_s=2.0)
        if answered:
            self._unanswered_since = None
            return True
        # alive but silent: a busy box can be slow to answer, so only a long silence counts as hung
        if self._unanswered_since is None:
            self._unanswered_since = now
        return now - self._unanswered_since < self.hung_after_s

    def _restart(self) -> None:
        assert self.server is not None and self.embedded is not None
        old = self.server
        old.stop(timeout_s=5.0)  # whatever is left: a hung server, the backend stubs, shared memory
        started = self.clock()
        self.attempts += 1
        try:
            self.server = self.embedded.start()
        except Exception as exc:  # TritonStartError mostly; the job must go on trying whatever it was
            delay = self.backoff.next()
            log.error("restarting Triton failed (%s); next try in %.0fs", exc, delay)
            self._next_attempt = self.clock() + delay
            return
        self.restarts += 1
        self.metrics.record_triton_restart()
        self._next_attempt = None
        self._unanswered_since = None
        self._up_since = self.clock()
        self.metrics.set_triton_up(True)
        log.warning("Triton restarted (pid %d) on %s in %.1fs, restart %d", self.server.info.pid,
                    self.embedded.ports, self._up_since - started, self.restarts)
        if self.after_restart is not None:
            try:
                self.after_restart(self.server)
            except Exception:  # the server is up; the reload is retried by later publishes and loads
                log.exception("reloading the models after Triton's restart failed")
