"""Trainer processes: launch with a share, watch, stop; never leave one behind.

CPU mode: a share is realised by the worker's thread count plus duty cycling (cpu_shares.py).
GPU mode: the worker is an MPS client with CUDA_MPS_ACTIVE_THREAD_PERCENTAGE set from its share and is
pinned to one device; MPS fixes the percentage when the process starts, so a re-plan changes the
shares of jobs started later and of inference, not of a job already running.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from controller.state import JobRecord
from trainer.configs import RetrainConfig
from trainer.jobs import BEST_FILE, PROGRESS_FILE, RESULT_FILE, JobResult, TrainJob

from .cpu_shares import DutyCycler, threads_for_share
from .launcher import WorkerHandle, start_worker, warm_up

log = logging.getLogger(__name__)

# Wall seconds a job spends outside its training whatever its share (start-up is not duty-cycled): the
# worker, forked from the warm fork server, loading the model and data (~0.3 s; a cold
# `python -m trainer.worker` spends ~2.5 s more importing torch), then the controller exporting,
# validating and loading the new model into Triton. The planner's estimate until this deployment has
# measured its own (ControllerState.job_latency_seconds).
WORKER_STARTUP_SECONDS = 0.5
PUBLISH_SECONDS = 2.0


@dataclass
class Finished:
    record: JobRecord
    result: JobResult
    # From launch to the worker's first event (its data, model and device ready; the serving model scored),
    # None where it never got there: the start-up part of a job's fixed latency.
    startup_seconds: float | None = None


class TrainerPool:
    def __init__(self, jobs_dir: Path, *, cores: int, gpu_env=None, warm: bool = True) -> None:
        """gpu_env(share, device_index) -> env dict for a GPU worker; None on a CPU-only machine.
        warm: fork workers from a fork server that has imported torch (launcher.py), and start it now
        in the background, so no job pays the imports."""
        self.jobs_dir = Path(jobs_dir)
        self.cores = cores
        self.gpu_env = gpu_env
        self.warm = warm
        if warm:
            threading.Thread(target=warm_up, name="trainer fork server", daemon=True).start()
        self.cycler = DutyCycler(cores=cores) if gpu_env is None else None
        self.handles: dict[str, WorkerHandle] = {}
        self.records: dict[str, JobRecord] = {}
        self._stopping: set[str] = set()

    def launch(self, *, job_id: str, camera: str, window: int, config: RetrainConfig, base_checkpoint: Path,
               data: Path, validation: Path | None, share: float, device: str = "cpu",
               predicted_accuracy: float | None = None, predicted_seconds: float | None = None,
               cost_scale: float = 1.0, cost_overhead: float = 0.0) -> JobRecord:
        output_dir = self.jobs_dir / job_id
        threads = threads_for_share(share, self.cores)
        env = dict(os.environ)
        worker_device = device
        if self.gpu_env is not None and device.startswith("cuda"):
            # Pinned: the worker sees only its GPU (CUDA_VISIBLE_DEVICES), as its cuda:0.
            env.update(self.gpu_env(share, int(device.split(":")[1]) if ":" in device else 0))
            worker_device = "cuda:0"
        else:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
            env["EKYA_TRAINER_THREADS"] = str(threads)
        job = TrainJob(job_id=job_id, camera=camera, base_checkpoint=base_checkpoint, data=data,
                       validation=validation, config=config, share=min(1.0, max(share, 1e-3)),
                       device=worker_device, output_dir=output_dir)
        launched = time.time()
        progress = output_dir / PROGRESS_FILE
        earlier_events = _size(progress)  # a resumed job's stream holds its earlier run's events
        handle = start_worker(job, env, warm=self.warm)
        if self.cycler is not None:
            # Cycled from the worker's first event on: its start-up is over, and it has set its parent-death
            # signal (a worker stopped before that would stay stopped if the controller died).
            self.cycler.set_share(handle.pid, share, threads, ready=lambda: _size(progress) > earlier_events)
        record = JobRecord(job_id=job_id, camera=camera, config=config.name, window=window, pid=handle.pid,
                           job_dir=str(output_dir), share=share, threads=threads, device=device,
                           started_at=launched, predicted_accuracy=predicted_accuracy,
                           predicted_seconds=predicted_seconds, cost_scale=cost_scale,
                           cost_overhead=cost_overhead)
        self.handles[job_id] = handle
        self.records[job_id] = record
        log.info("%s: trainer %s started (config %s, share %.2f, %d threads, pid %d)", camera, job_id,
                 config.name, share, threads, handle.pid)
        return record

    def set_share(self, job_id: str, share: float) -> None:
        record = self.records.get(job_id)
        if record is None:
            return
        if self.cycler is None:
            # GPU: a running worker keeps the MPS share it was launched with; the new one is the plan's
            record.share = share
            return
        record.change_share(share, time.time())
        if record.pid is not None:
            self.cycler.set_share(record.pid, share, record.threads)

    def progress(self, job_id: str) -> float:
        """Fraction of the job's epochs done, from its progress stream."""
        handle = self.handles.get(job_id)
        if handle is None:
            return 0.0
        epochs = handle.job.config.epochs
        done = 0
        for event in handle.events:
            if event.get("event") == "epoch":
                done = max(done, int(event.get("epoch", 0)))
        return min(1.0, done / max(1, epochs))

    def poll(self) -> list[Finished]:
        """Jobs that ended since the last poll."""
        finished = []
        for job_id, handle in list(self.handles.items()):
            if handle.is_running():
                continue
            finished.append(self._retire(job_id, handle))
        return finished

    def stop_all(self, timeout_s: float = 20.0) -> list[Finished]:
        """Stop every running job (each keeps its best checkpoint) and return their results."""
        for handle in self.handles.values():
            if handle.is_running():
                self._stopping.add(handle.job.job_id)
                if self.cycler is not None:
                    self.cycler.remove(handle.pid)  # a stopped process cannot handle SIGTERM
                (handle.output_dir / "STOP").touch()
                try:
                    os.killpg(handle.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout_s
        for handle in self.handles.values():
            handle.wait(max(0.1, deadline - time.monotonic()))
            if handle.is_running():
                handle.stop(timeout=1.0)
        return [self._retire(job_id, handle) for job_id, handle in list(self.handles.items())]

    def _retire(self, job_id: str, handle: WorkerHandle) -> Finished:
        if self.cycler is not None:
            self.cycler.remove(handle.pid)
        result = handle.result()
        assert result is not None
        if job_id in self._stopping and result.status == "failed" and result.exit_code < 0:
            # Stopped by us before it could install its signal handler (still importing torch).
            result = result.model_copy(update={"status": "stopped", "message": "stopped before its first epoch"})
        self._stopping.discard(job_id)
        record = self.records.pop(job_id)
        del self.handles[job_id]
        first = next((e for e in handle.events if e.get("event") in ("start", "resume") and "time" in e), None)
        startup = None if first is None else round(max(0.0, float(first["time"]) - record.started_at), 2)
        return Finished(record, result, startup)

    def running(self) -> list[JobRecord]:
        return list(self.records.values())

    def close(self) -> None:
        self.stop_all(timeout_s=10.0)
        if self.cycler is not None:
            self.cycler.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def kill_orphans(records: dict[str, JobRecord]) -> list[str]:
    """After a controller crash: kill trainer processes its state says were running."""
    killed = []
    for record in records.values():
        if record.pid is None or not _is_our_worker(record.pid, record.job_dir):
            continue
        for sig in (signal.SIGCONT, signal.SIGKILL):  # CONT first: a duty-cycled worker may be stopped
            try:
                os.killpg(record.pid, sig)
            except ProcessLookupError:
                break
        killed.append(record.job_id)
        log.warning("killed orphan trainer %s (pid %d) left by a previous controller", record.job_id, record.pid)
    return killed


def left_behind(record: JobRecord, killed: bool) -> Finished:
    """How a job recorded by a previous controller ended, read from its directory once no process of it
    runs any more (after kill_orphans): its result.json (written last, atomically: a job that finished
    while no controller ran), else a failed result saying why there is none."""
    job_dir = Path(record.job_dir)
    result = None
    try:
        result = JobResult.model_validate_json((job_dir / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    if result is None:
        # Either killed just now (still running when this controller started: another host's pid, a
        # reused one) or died while no controller ran: a trainer is SIGKILLed with its controller.
        why = ("was still running when the controller restarted: killed" if killed
               else "died without a result while no controller ran (a trainer is killed with its controller)")
        result = _best_so_far(record, job_dir, why) or JobResult(
            job_id=record.job_id, status="failed", exit_code=-signal.SIGKILL,
            message=f"{why}; see {job_dir / 'worker.log'}")
    return Finished(record, result, _startup_seconds(job_dir / PROGRESS_FILE, record.started_at))


def _best_so_far(record: JobRecord, job_dir: Path, why: str) -> JobResult | None:
    """A killed job's best model so far (best.pt is written atomically after each improving epoch, and the
    epoch's progress line says its held-out accuracy): judged like a job stopped at the window's end."""
    best_file = job_dir / BEST_FILE
    if not best_file.is_file():
        return None
    last = None
    try:
        with open(job_dir / PROGRESS_FILE, encoding="utf-8") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line cut by the kill
                if event.get("event") == "epoch" and event.get("best_val_accuracy") is not None:
                    last = event
    except OSError:
        return None
    if last is None:
        return None
    return JobResult(job_id=record.job_id, status="stopped", exit_code=-signal.SIGKILL,
                     best_val_accuracy=float(last["best_val_accuracy"]), epochs_done=int(last.get("epoch", 0)),
                     checkpoint=str(best_file),
                     message=f"{why} after epoch {last.get('epoch')}: its best checkpoint so far is judged")


def _startup_seconds(progress: Path, started_at: float) -> float | None:
    """Launch to the worker's first event (its progress stream's first line), if it got there."""
    try:
        with open(progress, encoding="utf-8") as handle:
            first = json.loads(handle.readline())
        return round(max(0.0, float(first["time"]) - started_at), 2)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def worker_log_of(pid: int) -> str | None:
    """Where the process writes its stdout (a trainer: its job's worker.log); None if it cannot be read."""
    try:
        return os.readlink(f"/proc/{pid}/fd/1")
    except OSError:
        return None


def _is_our_worker(pid: int, job_dir: str) -> bool:
    """The pid is a worker of that job: its stdout is the job's worker.log (a worker forked from the fork
    server has the server's command line), or its command line names trainer.worker and the job."""
    log_path = worker_log_of(pid)
    if log_path is not None and log_path.startswith(str(Path(job_dir) / "worker.log")):
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    text = [part.decode(errors="replace") for part in cmdline]
    return "trainer.worker" in text and any(job_dir in part for part in text)
