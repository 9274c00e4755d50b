"""Judging a finished trainer: its outcome recorded against the planner's prediction, and its model
published only if it beats the serving model on the held-out data it was trained beside."""

from __future__ import annotations

from pathlib import Path

from controller.planner.microprofile import Outcome
from controller.planner.objective import throughput_time
from controller.reconcile.context import WindowContext
from controller.reconcile.ports import Finished
from controller.reconcile.records import JobOutcome, Publication
from controller.reconcile.scope import Scope
from trainer import jobs


def failure_reason(exit_code: int) -> str:
    return {jobs.EXIT_OOM: "oom", jobs.EXIT_BAD_DATA: "invalid_output", jobs.EXIT_BAD_MODEL: "invalid_output",
            jobs.EXIT_BAD_JOB: "crash", jobs.EXIT_DEVICE: "crash", -9: "killed"}.get(exit_code, "crash")


class JobJudge:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def judge(self, item: Finished, context: WindowContext | None) -> None:
        scope = self.scope
        state = scope.state
        record, result = item.record, item.result
        state.jobs.pop(record.job_id, None)
        name, window = record.camera, record.window
        cam = state.cameras[name]
        if context is not None:
            context.finished.add(name)
        outcome = JobOutcome(job_id=record.job_id, config=record.config, status=result.status,
                             share=round(record.share, 4), retrained_accuracy=result.best_val_accuracy,
                             train_seconds=round(result.seconds, 1), epochs_done=result.epochs_done,
                             img_per_s=result.img_per_s, startup_seconds=item.startup_seconds)
        if record.predicted_seconds and result.status == "ok":
            # The planner's wall time for the job at its share (its throughput curve), against the worker's own.
            outcome.planned_train_seconds = round(throughput_time(record.predicted_seconds * record.cost_scale,
                                                                  record.share, scope.throughput), 2)
            outcome.cost_scale = round(record.cost_scale, 3)
        scope.events.job_ended(name, window, outcome)
        if result.status == "stopped" and not result.checkpoint:
            scope.events.job_decision(name, window, "stopped at the window's end before its first epoch: "
                                                    "nothing to publish")
            return
        if result.status == "failed" or not result.checkpoint:
            scope.events.trainer_failed(name, window, failure_reason(result.exit_code),
                                        f"trainer {record.job_id} failed: {result.message}")
            return
        if record.predicted_accuracy is not None and result.best_val_accuracy is not None and result.status == "ok":
            # (a job stopped at the window's end ran part of its epochs: not an outcome of its prediction)
            scope.ledger.record(Outcome(name, window, record.config, record.predicted_accuracy,
                                        result.best_val_accuracy, record.predicted_seconds or 0.0,
                                        result.seconds * scope.throughput(record.share)))  # whole-device seconds
            scope.metrics.observe_profile(name, record.predicted_accuracy, result.best_val_accuracy)
        new = result.best_val_accuracy or 0.0
        old = cam.serving_accuracy if cam.serving_accuracy is not None else -1.0
        if new <= old:
            scope.events.not_published(name, window, "retrained", Publication(
                accuracy=new, replaced_accuracy=old,
                decision=f"kept serving model ({new:.3f} <= {old:.3f} on held-out data)"))
            return
        publication = scope.publisher.publish(
            name, Path(result.checkpoint), window=window, slot="retrained", accuracy=new, replaced_accuracy=old,
            data_window=window - 1, window_started=context.started if context else scope.clock.time())
        if publication.version is None:
            return
        latency = min(max(scope.clock.time() - record.started_at - result.seconds, 0.0), state.window_seconds)
        previous = state.job_latency_seconds
        state.job_latency_seconds = latency if previous is None else 0.5 * previous + 0.5 * latency
