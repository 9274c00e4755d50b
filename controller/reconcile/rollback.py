"""Rollbacks: an earlier version's checkpoint served again, as a new version, through the publish path.

Two ways in: a user's `ekya rollback` (a request queued in the data directory, applied at the next step
or the ~1 s poll; its outcome recorded in the state for the command to read), and the automatic check at
each window close: a model published since the last close that scores worse on the window's held-out
data than the model it replaced, by more than `rollback.margin`, is rolled back (reason "auto"). The
check costs one extra evaluation, of the replaced checkpoint, and only for cameras that published.
"""

from __future__ import annotations

import logging

from controller.reconcile.records import RollbackRecord
from controller.reconcile.scope import Scope
from controller.rollback_requests import RollbackQueue, RollbackRefused, RollbackRequest, resolve_target
from trainer.streams.base import WindowData

log = logging.getLogger("controller")


class Rollbacks:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.queue = RollbackQueue(scope.layout)

    # ------------------------------------------------------------------ asked for (ekya rollback)
    def apply_requests(self) -> int:
        """Apply the queued requests, oldest first; returns how many were handled. Each outcome is saved
        before its request file goes, so a crash between the two applies nothing twice."""
        handled = 0
        for path, request in self.queue.pending():
            if self.scope.state.rollback_for(request.id) is None:
                self._apply(request)
                self.scope.save()
            self.queue.remove(path)
            handled += 1
        return handled

    def _apply(self, request: RollbackRequest) -> RollbackRecord:
        scope = self.scope
        state = scope.state
        cam = state.cameras.get(request.camera)
        try:
            target = resolve_target(state, scope.layout, scope.config.camera_names, request.camera,
                                    request.to_version)
            accuracy, measured_on = self._target_accuracy(request.camera, target)
            why = "asked for (ekya rollback)" + ("" if measured_on is None else
                                                 f"; {accuracy:.3f} on window {measured_on}'s held-out data")
            return self.roll_back(request.camera, target, reason="manual", window=state.window,
                                  request_id=request.id, accuracy=accuracy, data_window=measured_on, why=why)
        except (RollbackRefused, FileNotFoundError) as exc:  # nothing changed
            log.error("rollback of %s refused: %s", request.camera, exc)
            error = str(exc)
        except Exception as exc:  # a bad request must not stop the step that applies it
            log.exception("rollback of %s failed", request.camera)
            error = f"failed: {exc}"
        record = RollbackRecord(id=request.id, camera=request.camera, reason="manual", at=scope.clock.time(),
                                window=state.window, from_version=cam.serving_version if cam else None,
                                to_version=request.to_version, error=error)
        state.record_rollback(record)
        return record

    def _target_accuracy(self, camera: str, target: int) -> tuple[float, int | None]:
        """The target checkpoint's accuracy on the last closed window's held-out data (and that window),
        which a running job is judged on too; where it cannot be measured, its last recorded accuracy (or
        the serving model's), with no window."""
        scope = self.scope
        cam = scope.state.cameras[camera]
        closed = scope.state.closed
        test = scope.layout.window_dir(closed, camera) / "test.npz"
        if scope.evaluate is not None and closed >= 0 and test.is_file():
            try:
                return scope.evaluate(scope.layout.checkpoint(camera, target), WindowData.load(test)), closed
            except Exception:  # the rollback goes ahead, its accuracy taken from the records
                log.exception("%s: measuring v%d on window %d's held-out data failed", camera, target, closed)
        recorded = [accuracy for _, version, accuracy in cam.accuracy_history if version == target]
        if recorded:
            return recorded[-1], None
        return cam.serving_accuracy if cam.serving_accuracy is not None else 0.0, None

    # ------------------------------------------------------------------ automatic, at a window's close
    def check_live(self, camera: str, window: int, test: WindowData, accuracy: float | None) -> float | None:
        """At `window`'s close, with the serving model's `accuracy` on its held-out data `test`: a model
        published since the last close that is worse there than the one it replaced by more than the
        margin is rolled back. Returns the serving model's accuracy on `test` afterwards."""
        scope = self.scope
        cam = scope.state.cameras[camera]
        settings = scope.config.rollback
        if not cam.live_check_pending or accuracy is None:
            return accuracy  # nothing new, or nothing measured to check it on (the next close will)
        cam.live_check_pending = False
        if not settings.auto or scope.evaluate is None or not cam.replaced_versions:
            return accuracy
        serving, replaced = cam.serving_version, cam.replaced_versions[-1]
        checkpoint = scope.layout.checkpoint(camera, replaced)
        if not checkpoint.is_file():
            log.warning("%s: v%d's checkpoint is gone (pruned): v%d is not checked against it", camera, replaced,
                        serving)
            return accuracy
        try:
            old = scope.evaluate(checkpoint, test)
        except Exception:  # the new model keeps serving, unchecked
            log.exception("%s: measuring the replaced v%d on window %d's held-out data failed", camera, replaced,
                          window)
            return accuracy
        compared = (f"v{serving} scored {accuracy:.3f} on window {window}'s held-out data ({len(test)} crops), "
                    f"the v{replaced} it replaced {old:.3f} (margin {settings.margin:.3f})")
        if old - accuracy <= settings.margin:
            scope.events.note(window, f"{camera}: live check passed: {compared}")
            return accuracy
        log.warning("%s: automatic rollback: %s", camera, compared)
        try:
            record = self.roll_back(camera, replaced, reason="auto", window=window, accuracy=old,
                                    replaced_accuracy=accuracy, data_window=None, why=compared)
        except FileNotFoundError as exc:  # pruned since the look above: the window's close goes on
            log.error("%s: automatic rollback not done: %s", camera, exc)
            return accuracy
        return old if record.version is not None else accuracy

    # ------------------------------------------------------------------ the one way back
    def roll_back(self, camera: str, target: int, *, reason: str, window: int, accuracy: float,
                  why: str, replaced_accuracy: float | None = None, data_window: int | None = None,
                  request_id: str | None = None) -> RollbackRecord:
        """Serve `target`'s kept checkpoint as a new version; records the outcome (and returns it).
        Raises FileNotFoundError, nothing done, when the checkpoint is gone."""
        scope = self.scope
        state = scope.state
        cam = state.cameras[camera]
        previous = cam.serving_version
        if replaced_accuracy is None:
            replaced_accuracy = cam.serving_accuracy
        publication = scope.publisher.republish(
            camera, target, window=window, reason=reason, accuracy=accuracy, replaced_accuracy=replaced_accuracy,
            data_window=data_window, window_started=scope.window_start(window), why=why)
        now = scope.clock.time()
        record = RollbackRecord(id=request_id or f"{reason}-{camera}-w{window}-{int(now * 1000)}", camera=camera,
                                reason=reason, at=now, window=window, from_version=previous, to_version=target,
                                version=publication.version,
                                error=None if publication.version is not None else publication.decision)
        state.record_rollback(record)
        scope.observe(camera)
        return record
