"""Realising a CPU share for a trainer process on a machine without a GPU.

A share s of a C-core machine is s*C cores. We give the trainer ceil(s*C) torch threads at launch and
duty-cycle the process with SIGSTOP/SIGCONT so that it runs a fraction s*C/threads of each period:
threads x duty = s*C cores on average. Thread counts alone are too coarse on a 2-core edge box (1 or 2),
duty cycling alone would leave one thread idle on a big share. Processes are staggered within the
period so their running phases overlap as little as possible. A worker's start-up (importing torch,
loading its data and model) is not duty-cycled: cycling starts with its first progress event (the
planner counts start-up as fixed wall seconds per job, Problem.job_latency).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from trainer.shares import max_trainer_threads, threads_for_share

log = logging.getLogger(__name__)

__all__ = ["DutyCycler", "cpu_seconds", "cpu_throughput_points", "duty_for_share", "max_trainer_threads",
           "threads_for_share"]


def cpu_throughput_points(cores: int) -> dict[float, float]:
    """The share -> relative training throughput a CPU trainer gets here: linear up to the thread cap,
    flat beyond it (for the planner's ThroughputCurve, so it never buys share a trainer cannot use)."""
    cap = max_trainer_threads(cores) / cores
    return {s: min(s, cap) for s in (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, cap)}


def duty_for_share(share: float, cores: int, threads: int) -> float:
    return max(0.0, min(1.0, share * cores / threads))


@dataclass
class _Managed:
    pid: int
    threads: int
    duty: float
    offset: float  # where in the period its running phase starts (fraction of the period)
    stopped: bool = False
    # duty cycling starts once this returns True: a worker's start-up (imports, data and model loading)
    # runs unthrottled, so a small share does not stretch it from seconds to tens of seconds
    ready: Callable[[], bool] | None = None


class DutyCycler:
    def __init__(self, cores: int | None = None, period_s: float = 0.2) -> None:
        self.cores = cores or os.cpu_count() or 1
        self.period_s = period_s
        self._procs: dict[int, _Managed] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_share(self, pid: int, share: float, threads: int, ready: Callable[[], bool] | None = None) -> float:
        """Register or update `pid` (launched with `threads` threads); returns its duty fraction. With
        `ready`, a new process runs freely until ready() first returns True."""
        duty = duty_for_share(share, self.cores, threads)
        with self._lock:
            if pid in self._procs:
                self._procs[pid].duty = duty
                self._procs[pid].threads = threads
            else:
                self._procs[pid] = _Managed(pid, threads, duty, offset=0.0, ready=ready)
            self._restagger()
        self._ensure_thread()
        return duty

    def remove(self, pid: int) -> None:
        with self._lock:
            managed = self._procs.pop(pid, None)
            self._restagger()
        if managed is not None:
            _signal(pid, signal.SIGCONT)  # never leave a process stopped behind us

    def _restagger(self) -> None:
        offset = 0.0
        for managed in self._procs.values():
            managed.offset = offset % 1.0
            offset += managed.duty

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="duty-cycler", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            phase = (time.monotonic() / self.period_s) % 1.0
            next_change = 1.0
            with self._lock:
                for managed in list(self._procs.values()):
                    if not _alive(managed.pid):
                        self._procs.pop(managed.pid, None)
                        continue
                    if managed.ready is not None:
                        if not _call_ready(managed.ready):
                            continue  # still starting up: left running
                        managed.ready = None
                    running = _in_phase(phase, managed.offset, managed.duty)
                    if running and managed.stopped:
                        managed.stopped = not _signal(managed.pid, signal.SIGCONT)
                    elif not running and not managed.stopped:
                        managed.stopped = _signal(managed.pid, signal.SIGSTOP)
                    for edge in (managed.offset, (managed.offset + managed.duty) % 1.0):
                        gap = (edge - phase) % 1.0
                        if gap > 1e-4:
                            next_change = min(next_change, gap)
            self._stop.wait(max(0.002, min(next_change, 0.25) * self.period_s))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            for managed in self._procs.values():
                _signal(managed.pid, signal.SIGCONT)
            self._procs.clear()


def _call_ready(ready: Callable[[], bool]) -> bool:
    try:
        return bool(ready())
    except Exception:  # a broken check must not leave a trainer unthrottled forever
        return True


def _in_phase(phase: float, offset: float, duty: float) -> bool:
    if duty >= 1.0:
        return True
    if duty <= 0.0:
        return False
    return (phase - offset) % 1.0 < duty


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
