"""Rollback requests: how `ekya rollback` asks the controller that runs a deployment to serve an earlier
version's checkpoint again.

The controller holds the data directory's lock, so the command never touches Triton or the state itself:
it writes a small JSON request under requests/ (atomically); the controller applies it at its next
reconcile step (or its ~1 s poll), records the outcome in its state (`ControllerState.rollbacks`, which
the command waits for) and only then removes the file. A request queued while no controller runs is
applied at the next start. The checks on a target are here, shared: the command refuses bad input before
queueing, and the controller refuses what became bad meanwhile (a checkpoint pruned, the target serving).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

from pydantic import BaseModel, ValidationError

from common.atomic import atomic_write_text
from controller.layout import DataLayout
from controller.state import ControllerState

log = logging.getLogger("controller")


class RollbackRefused(ValueError):
    """The rollback cannot be done as asked (the message says why and what can be)."""


class RollbackRequest(BaseModel):
    id: str
    camera: str
    to_version: int | None = None  # None: the version the serving one replaced
    requested_at: float

    @classmethod
    def new(cls, camera: str, to_version: int | None) -> RollbackRequest:
        request_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        return cls(id=request_id, camera=camera, to_version=to_version, requested_at=time.time())


class RollbackQueue:
    """The requests/ folder of a deployment's data directory."""

    PREFIX = "rollback-"

    def __init__(self, layout: DataLayout) -> None:
        self.directory = layout.requests_dir

    def submit(self, request: RollbackRequest) -> Path:
        path = self.directory / f"{self.PREFIX}{request.id}.json"
        return atomic_write_text(path, request.model_dump_json(indent=1) + "\n")

    def pending(self, set_aside: bool = True) -> list[tuple[Path, RollbackRequest]]:
        """The queued requests, oldest first. An unreadable one is skipped; with `set_aside` (the controller
        applying them, not a reader) it is renamed *.invalid and logged."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob(f"{self.PREFIX}*.json"):  # (the atomic writer's temp files start with ".")
            try:
                found.append((path, RollbackRequest.model_validate_json(path.read_text())))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, ValidationError) as exc:
                if set_aside:
                    log.error("rollback request %s is unreadable, set aside: %s", path, exc)
                    os.replace(path, path.with_suffix(".invalid"))
        return sorted(found, key=lambda item: item[1].requested_at)

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)


def kept_versions(layout: DataLayout, camera: str) -> list[int]:
    """The camera's versions whose checkpoints are still on disk (older ones may have been pruned)."""
    directory = layout.checkpoint(camera, 0).parent
    if not directory.is_dir():
        return []
    names = (p.stem for p in directory.glob("v*.pt"))
    return sorted(int(n[1:]) for n in names if n[1:].isdigit())


def resolve_target(state: ControllerState, layout: DataLayout, cameras: list[str], camera: str,
                   to_version: int | None) -> int:
    """The version a rollback of `camera` goes back to (`to_version`, else the one the serving version
    replaced); raises RollbackRefused saying why not, and what the choices are."""
    if camera not in cameras:
        raise RollbackRefused(f"no camera named {camera!r} in the config; cameras: {', '.join(cameras)}")
    cam = state.cameras.get(camera)
    if cam is None or not cam.serving_version:
        raise RollbackRefused(f"{camera}: no model has been published yet; nothing to roll back")
    kept = kept_versions(layout, camera)
    choices = ", ".join(f"{v} (serving)" if v == cam.serving_version else str(v) for v in kept) or "none"
    serving = f"v{cam.serving_version}" + (f" (v{cam.serving_origin}'s checkpoint)" if cam.serving_origin else "")
    if to_version is None:
        if not cam.replaced_versions:
            raise RollbackRefused(f"{camera}: the serving {serving} replaced no recorded version; name one with "
                                  f"--to (versions whose checkpoints exist: {choices})")
        to_version = cam.replaced_versions[-1]
    if to_version in (cam.serving_version, cam.serving_origin):
        raise RollbackRefused(f"{camera}: version {to_version} is already serving ({serving}); versions whose "
                              f"checkpoints exist: {choices}")
    if to_version not in kept:
        raise RollbackRefused(f"{camera}: version {to_version} not found: no checkpoint "
                              f"{layout.checkpoint(camera, to_version)} (never published, or pruned); versions "
                              f"whose checkpoints exist: {choices}")
    return to_version
