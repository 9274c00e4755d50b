"""Every event the controller records, each in one place: the persisted state (counters and the window's
typed record), the Prometheus metrics and the log."""

from __future__ import annotations

import logging
from typing import Literal

from controller.metrics import ControllerMetrics
from controller.reconcile.records import CameraWindowRecord, JobOutcome, Publication, WindowRecord
from controller.state import ControllerState

log = logging.getLogger("controller")

Slot = Literal["retrained", "trial", "ahead_trial", "rollback"]
_WHAT = {"retrained": "retrained model", "trial": "profiler's trial model",
         "ahead_trial": "profiler's trial model (before the close)", "rollback": "rolled-back model"}


class EventLog:
    def __init__(self, state: ControllerState, metrics: ControllerMetrics) -> None:
        self.state = state
        self.metrics = metrics

    def window(self, window: int) -> WindowRecord | None:
        return self.state.record_for(window)

    def camera(self, window: int, name: str) -> CameraWindowRecord:
        """The camera's record for `window` (a detached one if that window was never planned)."""
        record = self.state.record_for(window)
        return record.camera(name) if record is not None else CameraWindowRecord()

    def opened(self, record: WindowRecord, text: str) -> None:
        self.state.history.append(record)
        self.note(record.window, text)

    def note(self, window: int, text: str) -> None:
        record = self.state.record_for(window)
        if record is not None:
            record.events.append(text)
        log.info("window %d: %s", window, text)

    def published(self, name: str, window: int, slot: Slot, publication: Publication) -> None:
        self.state.swaps += 1
        self.metrics.record_swap(name, ok=True)
        if slot != "rollback":  # a retrained model (a job's or a trial): its held-out accuracy
            self.metrics.observe_camera(name, retrained_accuracy=publication.accuracy)
        setattr(self.camera(window, name), slot, publication)
        log.info("%s: %s", name, publication.decision)

    def publish_failed(self, name: str, window: int, slot: Slot, publication: Publication) -> None:
        self.state.failed_swaps += 1
        self.metrics.record_swap(name, ok=False)
        setattr(self.camera(window, name), slot, publication)
        log.error("%s: publishing the %s failed: %s", name, _WHAT[slot], publication.decision)

    def rolled_back(self, name: str, window: int, reason: str, publication: Publication) -> None:
        """An earlier version's checkpoint serves again (a swap like any other, counted as a rollback too)."""
        self.state.swaps += 1
        self.metrics.record_swap(name, ok=True)
        self.metrics.record_rollback(name, reason)
        self.camera(window, name).rollback = publication
        self.note(window, f"{name}: {publication.decision}")

    def not_published(self, name: str, window: int, slot: Slot, publication: Publication) -> None:
        setattr(self.camera(window, name), slot, publication)
        log.info("%s: %s", name, publication.decision)

    def job_ended(self, name: str, window: int, outcome: JobOutcome) -> None:
        self.camera(window, name).job = outcome
        log.info("%s: trainer %s ended (%s) after %.1fs, %d epochs, held-out %s", name, outcome.job_id,
                 outcome.status, outcome.train_seconds, outcome.epochs_done,
                 "n/a" if outcome.retrained_accuracy is None else f"{outcome.retrained_accuracy:.3f}")

    def job_decision(self, name: str, window: int, decision: str) -> None:
        self.camera(window, name).decision = decision
        log.info("%s: %s", name, decision)

    def trainer_failed(self, name: str, window: int, reason: str, message: str) -> None:
        self.state.trainer_failures += 1
        self.metrics.record_trainer_failure(name, reason)
        self.camera(window, name).decision = message
        log.error("%s: %s", name, message)
