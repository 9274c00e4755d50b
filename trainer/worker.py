"""`python -m trainer.worker JOB.json`: one isolated retraining process.

Order matters: parse and validate the job, realise the share (CUDA_MPS_ACTIVE_THREAD_PERCENTAGE must
be set before CUDA initialises, i.e. before torch touches the GPU), then import torch and train.
Progress: JSON lines in OUTPUT/progress.jsonl (and stdout), and a readable line per epoch on stderr
(trainer.progress). After every epoch (trainer.fit's on_epoch): OUTPUT/state.pt (to resume) and, when
validation improves, OUTPUT/best.pt, both atomic. SIGTERM, SIGINT or OUTPUT/STOP stop it between
batches; the best checkpoint is kept. OUTPUT/result.json is written last.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.atomic import atomic_write, atomic_write_text
from common.parent_death import die_with_parent_named_in_env
from trainer.jobs import (
    BEST_FILE,
    EXIT_BAD_DATA,
    EXIT_BAD_JOB,
    EXIT_BAD_MODEL,
    EXIT_DEVICE,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_OOM,
    PROGRESS_FILE,
    RESULT_FILE,
    STATE_FILE,
    STOP_FILE,
    JobError,
    JobResult,
    TrainJob,
)
from trainer.progress import ProgressReporter, ProgressTask, show_progress_lines
from trainer.shares import threads_for_share, usable_cores

if TYPE_CHECKING:  # torch is imported only once the share is in the environment
    from trainer.fit import EpochStats, FitStart, FitState


class WorkerFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Stop:
    """Set by SIGTERM/SIGINT or the stop file; polled between batches."""

    def __init__(self, stop_file: Path) -> None:
        self.flag = False
        self.stop_file = stop_file

    def __call__(self) -> bool:
        return self.flag or self.stop_file.exists()

    def install(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self.flag = True
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def cpu_threads(share: float) -> int:
    """Threads for a CPU share: the controller's choice (EKYA_TRAINER_THREADS, which it pairs with duty
    cycling to hit the share exactly), else the controller's own rule (trainer.shares.threads_for_share:
    ceil(share x cores), leaving one core for serving)."""
    chosen = os.environ.get("EKYA_TRAINER_THREADS", "").strip()
    if chosen.isdigit() and int(chosen) > 0:
        return int(chosen)
    return threads_for_share(share, usable_cores())


def apply_share_env(job: TrainJob) -> None:
    """Environment for the share, before torch is imported."""
    if job.is_cuda:
        os.environ["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(1, min(100, math.ceil(job.share * 100))))
    else:
        n = str(cpu_threads(job.share))
        os.environ["OMP_NUM_THREADS"] = n
        os.environ["MKL_NUM_THREADS"] = n


class Progress:
    def __init__(self, job: TrainJob) -> None:
        self.job = job
        self.path = job.output_dir / PROGRESS_FILE

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "job_id": self.job.job_id, "camera": self.job.camera,
                           "time": round(time.time(), 3), **fields})
        with open(self.path, "a", encoding="utf-8") as fh:  # one short write per line
            fh.write(line + "\n")
        print(line, flush=True)


def _setup_device(job: TrainJob) -> Any:
    import torch

    if not job.is_cuda:
        torch.set_num_threads(cpu_threads(job.share))
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise WorkerFailure(EXIT_DEVICE, f"device {job.device} requested but CUDA is not available")
    if job.cuda_index >= torch.cuda.device_count():
        raise WorkerFailure(EXIT_DEVICE, f"device {job.device} requested but only "
                                         f"{torch.cuda.device_count()} GPU(s) are visible")
    torch.cuda.set_device(job.cuda_index)
    free, total = torch.cuda.mem_get_info(job.cuda_index)
    if free < job.min_free_memory_mb * 2**20:
        raise WorkerFailure(EXIT_OOM, f"only {free / 2**20:.0f} MiB free on {job.device} "
                                      f"(of {total / 2**20:.0f}); the job needs {job.min_free_memory_mb} MiB")
    return torch.device(f"cuda:{job.cuda_index}")


def _load_data(job: TrainJob) -> tuple[Any, Any, Any]:
    from trainer.streams.base import WindowData, WindowDataError

    try:
        data = WindowData.load(job.data)
        if job.validation is not None:
            train, val = data, WindowData.load(job.validation)
        else:
            train, val = data.labelled().split(job.val_fraction, seed=job.seed)
        history = WindowData.load(job.history) if job.history is not None else None
    except WindowDataError as exc:
        raise WorkerFailure(EXIT_BAD_DATA, str(exc)) from exc
    if train.num_labelled == 0:
        raise WorkerFailure(EXIT_BAD_DATA, f"{job.data}: no labelled crops to train on "
                                           f"({len(data)} crops, {data.num_labelled} labelled)")
    if val.num_labelled == 0:
        raise WorkerFailure(EXIT_BAD_DATA, "no labelled crops to validate on (add data or a validation file)")
    return train, val, history


def run_job(job: TrainJob) -> JobResult:
    """Train; raise WorkerFailure on a reportable failure. Returns the ok/stopped result."""
    import torch

    from trainer.fit import fit
    from trainer.models import ModelError, load_model
    from trainer.training import EmptyDataError

    out = job.output_dir
    stop = _Stop(out / STOP_FILE)
    stop.install()
    progress = Progress(job)
    device = _setup_device(job)
    train, val, history = _load_data(job)
    try:
        model = load_model(job.base_checkpoint)
    except ModelError as exc:
        raise WorkerFailure(EXIT_BAD_MODEL, str(exc)) from exc
    if train.image_size != val.image_size:
        raise WorkerFailure(EXIT_BAD_DATA, f"train crops are {train.image_size}px, validation {val.image_size}px")

    t0 = time.perf_counter()
    state = _load_state(out / STATE_FILE, job)
    report = ProgressReporter(f"trainer {job.job_id} ({job.camera}, {job.config.name})")
    epochs = _JobCallbacks(job, model, progress, report, val_crops=val.num_labelled, resumed=state is not None)
    try:
        with report:
            result = fit(model, job.config, train, val, device=device, seed=job.seed, history=history,
                         keep_best=False, start_accuracy=True, resume_state=state, on_start=epochs.on_start,
                         on_epoch=epochs.on_epoch, should_stop=stop)
    except EmptyDataError as exc:
        raise WorkerFailure(EXIT_BAD_DATA, str(exc)) from exc
    except torch.OutOfMemoryError as exc:
        raise WorkerFailure(EXIT_OOM, f"out of memory on {job.device}: {str(exc).splitlines()[0]}") from exc
    best = result.best_val_accuracy
    has_best = (out / BEST_FILE).is_file() and best is not None
    status = "stopped" if result.stopped else "ok"
    msg = (f"stopped on request after {result.epochs_done} epoch(s)" if result.stopped
           else f"trained {result.epochs_done} epoch(s) of {job.config.name}")
    return JobResult(job_id=job.job_id, status=status, message=msg, exit_code=EXIT_OK, best_val_accuracy=best,
                     start_val_accuracy=result.start_val_accuracy, best_epoch=result.best_epoch,
                     epochs_done=result.epochs_done, seconds=round(time.perf_counter() - t0, 3),
                     img_per_s=round(result.img_per_s, 1), checkpoint=str(out / BEST_FILE) if has_best else None)


class _JobCallbacks:
    """fit's callbacks for a job: the start (or resume) event, and after every epoch its checkpoints
    (best.pt when validation improved, state.pt to resume), its event and a readable log line."""

    def __init__(self, job: TrainJob, model: Any, progress: Progress, report: ProgressReporter, *,
                 val_crops: int, resumed: bool) -> None:
        self.job = job
        self.model = model
        self.progress = progress
        self.report = report
        self.val_crops = val_crops
        self.resumed = resumed
        self.task: ProgressTask | None = None

    def on_start(self, start: FitStart) -> None:
        import torch

        self.task = self.report.task("training", total=start.epochs, unit="epoch", completed=start.epoch)
        if self.resumed:
            self.progress.emit("resume", epoch=start.epoch, epochs=start.epochs,
                               best_val_accuracy=start.best_val_accuracy)
            self.report.note(f"resumed after epoch {start.epoch} of {start.epochs}")
        else:
            self.progress.emit("start", epochs=start.epochs, config=self.job.config.name, share=self.job.share,
                               device=self.job.device, threads=torch.get_num_threads(),
                               train_crops=start.train_crops, val_crops=self.val_crops,
                               start_val_accuracy=start.start_val_accuracy)

    def on_epoch(self, stats: EpochStats) -> None:
        from trainer.models import save_model

        job, out = self.job, self.job.output_dir
        t_saving = time.perf_counter()
        if stats.improved:
            save_model(self.model, out / BEST_FILE, camera=job.camera, job_id=job.job_id,
                       config=job.config.name, val_accuracy=stats.val_accuracy, epoch=stats.epoch)
        _save_state(out / STATE_FILE, job, stats.resume_state())
        self.progress.emit("epoch", epoch=stats.epoch, epochs=stats.epochs, loss=round(stats.loss, 5),
                           val_accuracy=stats.val_accuracy, best_val_accuracy=stats.best_val_accuracy,
                           img_per_s=round(stats.img_per_s, 1),
                           seconds=round(stats.seconds + time.perf_counter() - t_saving, 3))
        assert self.task is not None  # fit calls on_start first
        self.task.advance(f"loss {stats.loss:.3f}, {_accuracy(stats.val_accuracy)} held-out "
                          f"(best {_accuracy(stats.best_val_accuracy)}), {stats.img_per_s:.0f} img/s")


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _save_state(path: Path, job: TrainJob, state: FitState) -> None:
    """The fit's resumable state, tagged with the job it belongs to."""
    import torch

    obj = {"job_id": job.job_id, "config": job.config.name, **state.to_dict()}
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _load_state(path: Path, job: TrainJob) -> FitState | None:
    """The resumable FitState of this same job, or None (missing, unreadable, or another job's)."""
    import torch

    from trainer.fit import FitState

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable state means: start afresh
        return None
    if state.get("job_id") != job.job_id or state.get("config") != job.config.name:
        return None
    return FitState.from_dict(state)


def _write_result(out: Path, result: JobResult) -> None:
    atomic_write_text(out / RESULT_FILE, result.model_dump_json(indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    die_with_parent_named_in_env()  # started by a controller: no trainer outlives it (common/parent_death.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m trainer.worker JOB.json", file=sys.stderr)
        return EXIT_BAD_JOB
    try:
        job = TrainJob.read(argv[0])
    except JobError as exc:
        print(f"trainer.worker: {exc}", file=sys.stderr)
        _result_for_unreadable_job(Path(argv[0]), str(exc))
        return EXIT_BAD_JOB
    job.output_dir.mkdir(parents=True, exist_ok=True)
    # The worker's log (stderr) gets its progress lines; anything else only from warnings up.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    show_progress_lines()
    apply_share_env(job)
    t0 = time.perf_counter()
    try:
        result = run_job(job)
    except WorkerFailure as exc:
        result = JobResult(job_id=job.job_id, status="failed", message=str(exc), exit_code=exc.code)
    except MemoryError as exc:
        result = JobResult(job_id=job.job_id, status="failed", message=f"out of memory: {exc}",
                           exit_code=EXIT_OOM)
    except Exception as exc:  # noqa: BLE001 - report anything else as a failure, with its type
        # torch's CPU allocator raises a RuntimeError ("can't allocate memory"), CUDA's its own OOM type
        oom = any(marker in str(exc).lower() for marker in ("out of memory", "can't allocate memory"))
        result = JobResult(job_id=job.job_id, status="failed", message=f"{type(exc).__name__}: {exc}",
                           exit_code=EXIT_OOM if oom else EXIT_FAILED)
    if result.status == "failed":
        result = result.model_copy(update={"seconds": round(time.perf_counter() - t0, 3)})
        best = job.output_dir / BEST_FILE
        if best.is_file():  # a failure after some epochs still leaves a complete best model
            result = result.model_copy(update={"checkpoint": str(best)})
        print(f"trainer.worker: job {job.job_id} failed: {result.message}", file=sys.stderr)
    _write_result(job.output_dir, result)
    print(json.dumps({"event": "result", **result.model_dump()}), flush=True)
    return result.exit_code


def _result_for_unreadable_job(path: Path, message: str) -> None:
    """If the job file names an output_dir, leave a failed result.json there for the controller."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        out = Path(obj["output_dir"])
        job_id = str(obj.get("job_id", "unknown"))
    except Exception:  # noqa: BLE001 - best effort: the exit code already says it
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_result(out, JobResult(job_id=job_id, status="failed", message=message, exit_code=EXIT_BAD_JOB))
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
