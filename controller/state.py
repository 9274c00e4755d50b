"""The controller's persisted state: enough to resume after a crash or kill -9.

Written atomically after every change that matters (a window opened, a plan applied, a job started or
finished, a model published), so a restarted controller sees either the old or the new state. Before each
write the file it replaces becomes the last good copy (`state.json.prev`), if it parses: a state file
corrupted on disk (a bad sector, a hand edit, a copy cut short) is reported with its path and the
controller goes on from that copy. With both unusable, `load` raises StateFileCorrupt, which says how to
start afresh.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from common.atomic import atomic_write_bytes, atomic_write_text
from controller.reconcile.records import CameraWindowRecord, RollbackRecord, WindowRecord

log = logging.getLogger("controller")

STATE_VERSION = 2  # 2: typed window records (1 kept them as free-form dicts)
_V1_RECORD_KEYS = set(CameraWindowRecord.model_fields) - {"job", "retrained", "trial", "ahead_trial", "rollback"}
REPLACED_VERSIONS_KEPT = 8  # a camera's rollback targets remembered (their checkpoints may be pruned sooner)
ROLLBACKS_KEPT = 20  # the latest rollbacks' outcomes (what `ekya rollback` waits for)


class JobRecord(BaseModel):
    job_id: str
    camera: str
    config: str
    window: int
    pid: int | None = None
    job_dir: str
    share: float
    threads: int = 1
    device: str = "cpu"
    started_at: float
    predicted_accuracy: float | None = None
    predicted_seconds: float | None = None  # the micro-profiler's GPU-seconds, before the planner's cost scale
    cost_scale: float = 1.0  # the plan's cost = cost_overhead + cost_scale x predicted_seconds (the ledger's)
    cost_overhead: float = 0.0
    # Re-plans change a running job's share: share x seconds run at the earlier shares, up to share_since
    # (what the job cost is reckoned from, not its last share alone).
    share_seconds: float = 0.0
    share_since: float | None = None

    def change_share(self, share: float, now: float) -> None:
        """The job runs at `share` from `now` on."""
        since = self.share_since if self.share_since is not None else self.started_at
        self.share_seconds += self.share * max(0.0, now - since)
        self.share_since = now
        self.share = share

    def mean_share(self, until: float) -> float:
        """The share the job ran at on average from its launch to `until`."""
        span = until - self.started_at
        since = self.share_since if self.share_since is not None else self.started_at
        if span <= 0:
            return self.share
        return (self.share_seconds + self.share * max(0.0, until - since)) / span


class PendingPublish(BaseModel):
    """A publish in flight, recorded before it starts: after a crash, the version Triton serves is
    matched to these weights (or the half-finished version is taken out)."""

    checkpoint: str  # the weights being published, staged beside the served checkpoints
    accuracy: float | None = None  # on the held-out data that justified the publish
    started_at: float


class CameraRecord(BaseModel):
    serving_version: int = 0
    serving_checkpoint: str | None = None  # the PyTorch checkpoint behind the served version
    publishing: PendingPublish | None = None  # the intent of a publish not yet confirmed
    serving_accuracy: float | None = None  # on the latest golden-labelled held-out data
    # the serving model's agreement with the golden labels on the latest closed window's captured samples
    # (else the camera client's own measurement)
    live_accuracy: float | None = None
    captured: int = 0  # crops the camera's Triton model captured that reached the spool, in all
    stride: float = 1.0
    inference_share: float = 0.0
    training_share: float = 0.0
    config: str | None = None
    instances: int = 1
    # (window, serving version, accuracy on that window's held-out data): the drift forecast's input
    accuracy_history: list[tuple[int, int, float]] = Field(default_factory=list)
    error_growth: float = 1.0  # per-window growth of the serving model's error (planner/drift.py)
    # the versions the serving one replaced, latest last: where a rollback goes back to, one by one
    replaced_versions: list[int] = Field(default_factory=list)
    serving_origin: int | None = None  # the version whose checkpoint the serving one republished (a rollback)
    live_check_pending: bool = False  # published since the last close: to be checked against the replaced one

    def replace_serving(self, version: int) -> None:
        """`version` is about to serve instead of the serving version, which becomes a rollback target."""
        if self.serving_version and version != self.serving_version:
            self.replaced_versions = [*self.replaced_versions, self.serving_version][-REPLACED_VERSIONS_KEPT:]
            self.live_check_pending = True
        self.serving_origin = None

    def rolled_back(self, target: int) -> None:
        """The serving version republishes `target`'s checkpoint: the next rollback goes to what came before
        `target` (a rollback is not checked against the model it undid)."""
        if target in self.replaced_versions:
            index = len(self.replaced_versions) - 1 - self.replaced_versions[::-1].index(target)
            self.replaced_versions = self.replaced_versions[:index]
        self.serving_origin = target
        self.live_check_pending = False

    def record_accuracy(self, window: int, version: int, accuracy: float) -> None:
        """Add a measurement to accuracy_history (the latest four are kept)."""
        self.accuracy_history = [*self.accuracy_history, (window, version, accuracy)][-4:]


class ControllerState(BaseModel):
    version: int = STATE_VERSION
    t0: float
    window_seconds: float
    window: int = -1  # the window most recently opened (planned); -1 before the first
    closed: int = -1  # the window most recently closed (data labelled, its trainers ended)
    cameras: dict[str, CameraRecord] = Field(default_factory=dict)
    jobs: dict[str, JobRecord] = Field(default_factory=dict)  # running trainer jobs by job id
    history: list[WindowRecord] = Field(default_factory=list)
    swaps: int = 0
    failed_swaps: int = 0
    trainer_failures: int = 0
    pruning: dict = Field(default_factory=dict)  # the micro-profiler's pruning state, as the planner dumps it
    # measured wall seconds a published job spent outside its training (start-up, export, load): moving average
    job_latency_seconds: float | None = None
    rollbacks: list[RollbackRecord] = Field(default_factory=list)  # the latest ROLLBACKS_KEPT, oldest first

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """A version-1 state (free-form window records): keep what a typed record has, drop the rest."""
        if isinstance(data, dict) and data.get("version", 1) < 2:
            for record in data.get("history", []):
                record["cameras"] = {name: {k: v for k, v in entry.items() if k in _V1_RECORD_KEYS}
                                     for name, entry in record.get("cameras", {}).items()}
            data["version"] = STATE_VERSION
        return data

    def save(self, path: Path) -> None:
        """Write atomically, the replaced file kept as the last good copy if it parses."""
        path = Path(path)
        _keep_last_good(path)
        atomic_write_text(path, self.model_dump_json(indent=1) + "\n")
        _written[path] = _identity(path)

    @classmethod
    def load(cls, path: Path, rebuild: Callable[[], ControllerState | None] | None = None) -> ControllerState | None:
        """The saved state; None when there is none (a new deployment). A corrupt state file is logged with
        its path and what is wrong, and the last good copy is used; with that unusable too, `rebuild`
        (the state from what Triton serves; None: no usable state), else StateFileCorrupt."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            return _read(path)
        except _Unusable as exc:
            problem = str(exc)
        copy = previous_copy(path)
        log.error("the controller's state file %s is unusable (%s); recovering from its last good copy %s",
                  path, problem, copy)
        try:
            state = _read(copy)
        except _Unusable as exc:
            copy_problem = str(exc)
        else:
            log.warning("recovered the controller's state from %s (window %d); %s is replaced at the next save",
                        copy, state.window, path)
            return state
        rebuilt = rebuild() if rebuild is not None else None
        if rebuilt is not None:
            log.warning("the state file %s and its copy %s are unusable (%s): state rebuilt from the serving models",
                        path, copy, copy_problem)
            return rebuilt
        raise StateFileCorrupt(path, problem, copy, copy_problem)

    def record_rollback(self, rollback: RollbackRecord) -> None:
        self.rollbacks = [*self.rollbacks, rollback][-ROLLBACKS_KEPT:]

    def rollback_for(self, request_id: str) -> RollbackRecord | None:
        return next((r for r in self.rollbacks if r.id == request_id), None)

    def record_for(self, window: int) -> WindowRecord | None:
        for record in reversed(self.history):
            if record.window == window:
                return record
        return None


class StateFileCorrupt(RuntimeError):
    """The state file and its last good copy are both unusable: the message names both and the way out."""

    def __init__(self, path: Path, problem: str, copy: Path, copy_problem: str) -> None:
        self.path, self.copy = path, copy
        super().__init__(
            f"the controller's state file {path} is unusable ({problem}), and so is its last good copy {copy} "
            f"({copy_problem}). `ekya run` recovers by itself: it moves both aside and rebuilds the state from the "
            f"versions Triton serves and their kept checkpoints (the window clock restarts at window 0). To do it "
            f"by hand: mv {path} {path}.bad; mv {copy} {copy}.bad")


# The state files this process wrote, as (inode, size, mtime): such a file parses (it was written from a
# valid state, atomically), so rotating it needs no parse (a large state takes tens of ms to parse).
_written: dict[Path, tuple[int, int, int]] = {}


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class _Unusable(Exception):
    """A state file that cannot be read or parsed (its message says why)."""


def previous_copy(path: Path) -> Path:
    """The last good copy of a state file."""
    return path.with_name(path.name + ".prev")


def _read(path: Path) -> ControllerState:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise _Unusable("it does not exist") from None
    except OSError as exc:
        raise _Unusable(f"cannot read it: {exc.strerror or exc}") from exc
    if not text.strip():
        raise _Unusable("it is empty")
    try:
        return ControllerState.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors()
        where = "; ".join(": ".join(filter(None, (".".join(str(part) for part in e["loc"]), e["msg"])))
                          for e in errors[:3])
        raise _Unusable(where + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else "")) from exc


def _keep_last_good(path: Path) -> None:
    """Make the state file about to be replaced the last good copy, if it parses (a corrupt one never
    replaces a good copy). A hard link renamed over the copy: atomic, and no bytes written."""
    link = path.with_name(f".{path.name}.prev.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        os.link(path, link)
    except FileNotFoundError:
        return  # the first save
    except OSError:  # a file system without hard links: a copy, written atomically
        try:
            _read(path)
        except _Unusable as exc:
            log.error("the state file %s being replaced is unusable (%s): not kept as the last good copy", path, exc)
            return
        atomic_write_bytes(previous_copy(path), path.read_bytes())
        return
    try:
        if _written.get(path) != _identity(link):  # not the file this process wrote last: check it
            _read(link)
    except _Unusable as exc:
        link.unlink(missing_ok=True)
        log.error("the state file %s being replaced is unusable (%s): not kept as the last good copy", path, exc)
        return
    os.replace(link, previous_copy(path))  # made durable by the state write's directory sync that follows
