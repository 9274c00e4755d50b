"""Triton's repository index is the truth about what is served; the state is squared with it.

Every reconcile step (and the start-up, before anything is bootstrapped) asks the server which version
of each camera's model it serves, then:
- a recorded publish intent whose version Triton serves is confirmed (its staged weights become the
  served version's checkpoint): the controller died between the load and the state's save;
- an intent Triton does not serve is withdrawn, and a version on disk above the served one (a publish
  that never loaded) is taken out, so that a server restart cannot bring up weights nobody recorded;
- a served version the state does not name is adopted when its checkpoint is kept, else taken out
  (the newest version whose weights are known serves again).
While the server cannot be asked (restarting, say), nothing is changed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from controller.reconcile.scope import Scope
from controller.state import CameraRecord

log = logging.getLogger("controller")


class ServingTruth:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def repair(self) -> list[str]:
        """Square the state with what Triton serves; returns the cameras whose record changed."""
        scope = self.scope
        names = scope.config.camera_names
        try:
            served = scope.serving.served_versions(names)
        except Exception as exc:  # the server is down or restarting: its supervisor's business
            log.debug("serving truth: Triton not answering (%s); state left as it is", exc)
            return []
        changed = [name for name in names if self._repair(name, served.get(name))]
        if changed:
            scope.save()
        return changed

    def _repair(self, name: str, served: int | None) -> bool:
        scope = self.scope
        record = scope.state.cameras.setdefault(name, CameraRecord())
        if served is None:
            return False  # not loaded: the start-up serves it (or the supervisor reloads it)
        changed = False
        for version in scope.serving.repository_versions(name):
            if version > served:
                self._retire(name, version, "it never loaded: a publish interrupted before the load")
        pending = Path(record.publishing.checkpoint) if record.publishing is not None else None
        if served != record.serving_version:
            before = record.serving_version
            kept = scope.layout.checkpoint(name, served)
            if not kept.is_file() and pending is not None and pending.is_file() and served > record.serving_version:
                accuracy = record.publishing.accuracy if record.publishing is not None else None
                scope.publisher.adopt(name, served, pending)
                record.serving_accuracy = accuracy
                self._note(name, f"confirmed the interrupted publish of v{served} (Triton serves it; the state "
                                 f"named v{before})")
                pending = None
            elif kept.is_file():
                scope.publisher.adopt(name, served, kept)
                record.serving_accuracy = None  # measured again when the window closes
                self._note(name, f"state named v{before}, Triton serves v{served}: adopted v{served}")
            else:
                self._retire(name, served, "Triton served it but no checkpoint of its weights is kept")
                return changed
            changed = True
        if record.publishing is not None:
            if pending is not None:
                pending.unlink(missing_ok=True)
            record.publishing = None
            self._note(name, f"withdrew an interrupted publish (Triton still serves v{served})")
            changed = True
        return changed

    def _retire(self, name: str, version: int, why: str) -> None:
        log.warning("%s: taking v%d out of the model repository: %s", name, version, why)
        try:
            self.scope.serving.retire_version(name, version, why)
        except Exception as exc:
            log.error("%s: could not take v%d out of the repository: %s", name, version, exc)

    def _note(self, name: str, text: str) -> None:
        self.scope.metrics.record_state_repair(name)
        self.scope.events.note(self.scope.state.window, f"{name}: {text}")
