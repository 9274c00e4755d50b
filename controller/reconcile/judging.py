"""Judging a finished trainer: its outcome recorded against the planner's prediction, and its model
published only if it beats the serving model on the held-out data it was trained beside. A job that
ended while no controller ran is judged the same way by the next one (adopt)."""

from __future__ import annotations

import logging
from pathlib import Path

from controller.layout import DataLayout
from controller.planner.microprofile import Outcome
from controller.planner.objective import throughput_time
from controller.reconcile.context import WindowContext
from controller.reconcile.ports import Finished
from controller.reconcile.records import JobOutcome, Publication
from controller.reconcile.scope import Scope
from controller.state import JobRecord
from trainer import jobs
from trainer.streams.base import WindowData

log = logging.getLogger("controller")


def failure_reason(exit_code: int) -> str:
    return {jobs.EXIT_OOM: "oom", jobs.EXIT_BAD_DATA: "invalid_output", jobs.EXIT_BAD_MODEL: "invalid_output",
            jobs.EXIT_BAD_JOB: "crash", jobs.EXIT_DEVICE: "crash", -9: "killed"}.get(exit_code, "crash")


class JobJudge:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def judge(self, item: Finished, context: WindowContext | None) -> None:
        """A job that ended while this controller ran: set against the serving model's accuracy on the job's
        held-out data, measured when the window was closed and planned (CameraRecord.serving_accuracy)."""
        scope = self.scope
        record = item.record
        if context is not None:
            context.finished.add(record.camera)
        window_started = context.started if context else scope.clock.time()
        if self._judge(item, scope.state.cameras[record.camera].serving_accuracy, window_started):
            latency = min(max(scope.clock.time() - record.started_at - item.result.seconds, 0.0),
                          scope.state.window_seconds)
            previous = scope.state.job_latency_seconds
            scope.state.job_latency_seconds = latency if previous is None else 0.5 * previous + 0.5 * latency

    def adopt(self, item: Finished) -> None:
        """A job recorded by a previous controller that ended while no controller ran (at restart): judged
        like any, against the serving model measured again on the job's held-out data (the recorded figure
        may be of another version by now; the window's in-memory context went with the old controller).
        Its wall time includes the downtime: not a measure of the job latency."""
        scope = self.scope
        record = item.record
        replaced = self.serving_accuracy_on_held_out(record)
        if replaced is None:
            replaced = scope.state.cameras[record.camera].serving_accuracy
        self._judge(item, replaced, scope.window_start(record.window))

    def serving_accuracy_on_held_out(self, record: JobRecord) -> float | None:
        """The serving model's accuracy on the held-out data the job was validated on; None if it cannot be
        measured (the data gone, serving down)."""
        path = held_out_data(record, self.scope.layout)
        try:
            data = WindowData.load(path)
            return self.scope.serving.accuracy(record.camera, data.images, data.labels)
        except Exception as exc:  # judged against the recorded accuracy instead
            log.warning("%s: could not measure the serving model on %s (%s); judging trainer %s against the "
                        "recorded accuracy", record.camera, path, exc, record.job_id)
            return None

    def _judge(self, item: Finished, serving_accuracy: float | None, window_started: float) -> bool:
        """Record the job's outcome; publish its model if it beats `serving_accuracy`. True if published."""
        scope = self.scope
        state = scope.state
        record, result = item.record, item.result
        state.jobs.pop(record.job_id, None)
        name, window = record.camera, record.window
        # re-plans may have changed its share while it ran: its cost is reckoned at the mean share it ran at
        share = record.mean_share(record.started_at + (item.startup_seconds or 0.0) + result.seconds)
        outcome = JobOutcome(job_id=record.job_id, config=record.config, status=result.status,
                             share=round(share, 4), retrained_accuracy=result.best_val_accuracy,
                             train_seconds=round(result.seconds, 1), epochs_done=result.epochs_done,
                             img_per_s=result.img_per_s, startup_seconds=item.startup_seconds)
        if record.predicted_seconds and result.status == "ok":
            # The planner's wall time for the job at its share (its throughput curve), against the worker's own.
            planned = record.cost_overhead + record.predicted_seconds * record.cost_scale
            outcome.planned_train_seconds = round(throughput_time(planned, share, scope.throughput), 2)
            outcome.cost_scale = round(record.cost_scale, 3)
            outcome.cost_overhead = round(record.cost_overhead, 3)
        scope.events.job_ended(name, window, outcome)
        if result.status == "stopped" and not result.checkpoint:
            scope.events.job_decision(name, window, "stopped at the window's end before its first epoch: "
                                                    "nothing to publish")
            return False
        if result.status == "failed" or not result.checkpoint:
            scope.events.trainer_failed(name, window, failure_reason(result.exit_code),
                                        f"trainer {record.job_id} failed: {result.message}")
            return False
        if record.predicted_accuracy is not None and result.best_val_accuracy is not None and result.status == "ok":
            # (a job stopped at the window's end ran part of its epochs: not an outcome of its prediction)
            scope.ledger.record(Outcome(name, window, record.config, record.predicted_accuracy,
                                        result.best_val_accuracy, record.predicted_seconds or 0.0,
                                        result.seconds * scope.throughput(share)))  # whole-device seconds
            scope.metrics.observe_profile(name, record.predicted_accuracy, result.best_val_accuracy)
        new = result.best_val_accuracy or 0.0
        old = serving_accuracy if serving_accuracy is not None else -1.0
        if new <= old:
            scope.events.not_published(name, window, "retrained", Publication(
                accuracy=new, replaced_accuracy=old,
                decision=f"kept serving model ({new:.3f} <= {old:.3f} on held-out data)"))
            return False
        publication = scope.publisher.publish(
            name, Path(result.checkpoint), window=window, slot="retrained", accuracy=new, replaced_accuracy=old,
            data_window=window - 1, window_started=window_started)
        return publication.version is not None


def held_out_data(record: JobRecord, layout: DataLayout) -> Path:
    """The held-out data a job was validated on: its job file's, else its window's data (a window-W job
    trains on the data of window W-1, controller/reconcile/planning.py)."""
    try:
        validation = jobs.TrainJob.read(Path(record.job_dir) / jobs.JOB_FILE).validation
    except jobs.JobError:
        validation = None
    return validation or layout.window_dir(record.window - 1, record.camera) / "test.npz"
