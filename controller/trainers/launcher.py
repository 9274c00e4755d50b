"""Start and watch training workers from the controller.

A worker is `python -m trainer.worker JOB.json` in a fresh interpreter, or (warm=True) the same entry
point forked from a pre-warmed fork server that has already imported torch, torchvision and the trainer:
importing those takes 2-3 s of a short retraining window on a small CPU, every job. Either way each
worker runs in its own session (process group) so stop() and the duty cycler can signal it without
touching the controller, and its stdout/stderr go to OUTPUT/worker.log.

No worker outlives the controller, even one the duty cycler has SIGSTOPped (Linux: a parent-death
SIGKILL, common/parent_death.py): a fresh worker dies with the controller, forked from one long-lived
thread of it (the signal follows the forking thread); a forked worker dies with the fork server, and the
fork server exits when the controller dies (the stdlib's "alive" pipe, which each forked worker closes
its copy of, so that only the controller keeps the fork server alive).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common.parent_death import PARENT_PID_ENV, die_with_parent
from trainer.jobs import EXIT_FAILED, JOB_FILE, PROGRESS_FILE, RESULT_FILE, STOP_FILE, JobResult, TrainJob

log = logging.getLogger(__name__)
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
# What the fork server imports once, so a forked worker starts with them loaded (none initialises CUDA
# or a thread pool, so forking after them is safe); this module too, which a forked worker imports to
# run _forked_worker.
_WARM_MODULES = ["torch", "torchvision", "trainer.worker", "trainer.training", "trainer.models",
                 "controller.trainers.launcher"]
# The process that imported this module. The fork server preloads it, so in a worker forked from the
# fork server this is the fork server's pid, known from before the fork: the parent the worker dies with.
_IMPORTED_BY_PID = os.getpid()
# Fresh workers are forked from this one thread, whatever thread launches them (a scheduler's pool
# thread may come and go): their parent-death signal fires when the thread that forked them exits.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainer-spawner")


def _warm_context() -> multiprocessing.context.ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_WARM_MODULES)
    return ctx


def _noop() -> None:
    return None


def warm_up() -> None:
    """Start the fork server (it imports torch once) before the first job needs it; blocks until ready.
    Where it cannot start, say so once: jobs then start as fresh processes (start_worker)."""
    process = _warm_context().Process(target=_noop, daemon=True)
    try:
        process.start()
        process.join()
    except (OSError, RuntimeError, EOFError) as exc:
        log.warning("fork server unavailable (%s): trainers will start as fresh processes", exc)


class _ForkedProcess:
    """A worker forked from the fork server, with the subprocess.Popen interface WorkerHandle uses."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("trainer.worker (forked)", timeout or 0.0)
        return self._process.exitcode


class WorkerHandle:
    def __init__(self, job: TrainJob, process: subprocess.Popen[bytes] | _ForkedProcess) -> None:
        self.job = job
        self.process = process
        self._offset = 0
        self._events: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output_dir(self) -> Path:
        return self.job.output_dir

    def is_running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def poll_progress(self) -> list[dict[str, Any]]:
        """New progress events since the last call (complete lines only)."""
        path = self.output_dir / PROGRESS_FILE
        try:
            with open(path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        new = []
        for line in chunk[:end].splitlines():
            try:
                new.append(json.loads(line))
            except ValueError:
                continue
        self._events.extend(new)
        return new

    @property
    def events(self) -> list[dict[str, Any]]:
        self.poll_progress()
        return list(self._events)

    def latest(self) -> dict[str, Any] | None:
        ev = self.events
        return ev[-1] if ev else None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Ask the worker to stop (stop file + SIGTERM); SIGKILL it after `timeout`. Returns exit code."""
        if not self.is_running():
            return self.process.returncode
        (self.output_dir / STOP_FILE).touch()
        self._signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self._signal(signal.SIGKILL)
            code = self.wait(5.0)
        return code

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def result(self) -> JobResult | None:
        """The worker's result.json; None while running; a failed result if it died without one."""
        path = self.output_dir / RESULT_FILE
        if path.is_file():
            try:
                return JobResult.model_validate_json(path.read_text(encoding="utf-8"))
            except ValueError:
                pass
        if self.is_running():
            return None
        code = self.process.returncode
        return JobResult(job_id=self.job.job_id, status="failed", exit_code=code if code else EXIT_FAILED,
                         message=f"worker exited with code {code} without a result (killed?); "
                                 f"see {self.output_dir / 'worker.log'}")


def start_worker(job: TrainJob, env: Mapping[str, str] | None = None, python: str | None = None,
                 warm: bool = False) -> WorkerHandle:
    """Write OUTPUT/job.json and start `python -m trainer.worker` on it (warm: forked from the fork
    server instead, same entry point and environment). A stale STOP file or result from an earlier run
    of the same output dir is removed first (state.pt is kept, to resume)."""
    out = job.output_dir
    out.mkdir(parents=True, exist_ok=True)
    for stale in (STOP_FILE, RESULT_FILE):
        (out / stale).unlink(missing_ok=True)
    job_path = job.write(out / JOB_FILE)
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(_PROJECT_ROOT)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else []))
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env.pop(PARENT_PID_ENV, None)  # a forked worker's parent is the fork server (_forked_worker)
    if warm and python is None:
        process = _warm_context().Process(
            target=_forked_worker, args=(str(job_path), full_env, str(out / "worker.log"), str(_PROJECT_ROOT)),
            daemon=True, name=f"trainer.worker {job.job_id}")
        try:
            process.start()
            return WorkerHandle(job, _ForkedProcess(process))
        except (OSError, RuntimeError, EOFError) as exc:  # no fork server here: a fresh interpreter still works
            log.warning("fork server unavailable (%s); starting %s as a fresh process", exc, job.job_id)
    full_env[PARENT_PID_ENV] = str(os.getpid())  # the worker dies with this process (trainer/worker.py)
    with open(out / "worker.log", "ab") as worker_log:  # the child keeps its own copy of the descriptor
        proc = _SPAWNER.submit(
            subprocess.Popen, [python or sys.executable, "-m", "trainer.worker", str(job_path)],
            stdout=worker_log, stderr=subprocess.STDOUT, env=full_env, cwd=str(_PROJECT_ROOT),
            start_new_session=True).result()
    return WorkerHandle(job, proc)


def _forked_worker(job_path: str, env: dict[str, str], log_path: str, cwd: str) -> None:
    """A forked worker's first steps: what Popen(start_new_session=True, stdout=log, env, cwd) does for a
    fresh interpreter, then the worker's own main (its return value is the process's exit code)."""
    _die_with_fork_server()
    os.setsid()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    from trainer.worker import main

    sys.exit(main([job_path]))


def _die_with_fork_server() -> None:
    """A forked worker's tie to the controller: it dies with the fork server, which exits when no process
    holds its "alive" pipe any more. The stdlib hands every process it forks a copy of that pipe: closed
    here, so the workers do not keep the fork server (and so themselves) alive once the controller is gone.
    (The pipe's descriptor is a private attribute of CPython's ForkServer, stable since 3.4.)"""
    from multiprocessing import forkserver

    server = forkserver._forkserver
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(alive_fd)
        server._forkserver_alive_fd = None
    die_with_parent(_IMPORTED_BY_PID if _IMPORTED_BY_PID != os.getpid() else os.getppid())


def run_worker(job: TrainJob, timeout: float | None = None, env: Mapping[str, str] | None = None) -> JobResult:
    """Start a worker and wait for its result (stopping it after `timeout` seconds)."""
    handle = start_worker(job, env)
    deadline = None if timeout is None else time.monotonic() + timeout
    while handle.is_running():
        if deadline is not None and time.monotonic() > deadline:
            handle.stop()
            break
        time.sleep(0.1)
    handle.wait()
    res = handle.result()
    assert res is not None
    return res
