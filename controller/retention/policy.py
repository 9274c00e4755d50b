"""What retention deletes: a pure function of what is on disk (a DiskView) and the rules (no I/O here).

Per kind, from the cheapest loss to the dearest:
    jobs        an ended job's checkpoints at once (it was judged: a published model was copied to
                checkpoints/); its small records (job.json, result, progress, worker.log) after keep_windows
                windows, then the whole directory. A job the state lists as running is never touched.
    trials      the micro-profiler's trial checkpoints once their window is over.
    versions    the newest keep_versions versions of each model (repository and checkpoint), the serving
                one, any newer one (a publish in flight: loaded before the state names it) and the base
                checkpoint of a running job are kept; older ones go.
    windows     labelled data of the last keep_windows closed windows and of the windows running jobs
                train on are kept (the planner reads the last closed window, trainers the one before theirs).
    records     the state keeps keep_window_records window records (older ones go to the windows log),
                camera results of older windows go; logs over max_log_bytes are rotated (one old copy).
    trash       versions taken out of the repository for a reason (a failed load, a rollback): the newest
                keep_versions kept for post-mortems; leftovers of an interrupted staging go.
    quarantine  corrupt files moved aside (protocol/quarantine.py): the newest QUARANTINE_KEPT (with their
                reasons) are kept for the operator to look at, older ones go.
Then, while the data directory is still over its budget, the spool's oldest chunks: those of closed windows
(already labelled into windows/) first, then the open window's, oldest first; but the open window's only if
that brings the directory within budget (else they would be lost for nothing: what retention must keep is
over the budget by itself, and the report says so).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

QUARANTINE_KEPT = 32  # quarantined files kept for post-mortems (each with its .reason)


@dataclass(frozen=True)
class Rules:
    budget_bytes: int
    keep_versions: int = 3
    keep_windows: int = 2
    keep_window_records: int = 100
    max_log_bytes: int = 64 * 2**20

    def __post_init__(self) -> None:
        if self.keep_versions < 2:
            raise ValueError("keep_versions must be >= 2 so that a rollback has somewhere to go")


@dataclass(frozen=True)
class JobDir:
    name: str
    newest_mtime: float  # of any file in it: when the job last did something
    checkpoint_bytes: int  # its *.pt files
    total_bytes: int


@dataclass(frozen=True)
class Version:
    """One published version of a model: in the repository, as a checkpoint, or both."""

    model: str
    version: int
    repository_bytes: int = 0  # 0: not (or no longer) in the repository
    checkpoint_bytes: int = 0  # 0: no checkpoint (the golden model has none)
    pinned: bool = False  # a running job's base checkpoint


@dataclass(frozen=True)
class Entry:
    """A file or directory retention may delete whole."""

    path: Path
    bytes: int
    mtime: float = 0.0
    window: int | None = None  # the window it belongs to, where it has one


@dataclass(frozen=True)
class DiskView:
    now: float
    window_seconds: float
    open_window: int  # -1 before the first
    open_window_start: float
    closed: int  # -1 before the first close
    total_bytes: int  # the data directory (with the repository when inside it)
    repository_inside: bool = True  # else its versions are still kept to keep_versions, but not counted
    jobs: tuple[JobDir, ...] = ()
    active_jobs: frozenset[str] = frozenset()
    versions: tuple[Version, ...] = ()
    serving: Mapping[str, int] = field(default_factory=dict)  # model -> serving version, where recorded
    windows: Mapping[int, int] = field(default_factory=dict)  # window -> bytes of windows/w<W>/
    needed_windows: frozenset[int] = frozenset()  # read by running jobs
    trials: tuple[Entry, ...] = ()
    results: tuple[Entry, ...] = ()  # cameras' per-window result files (window set)
    logs: tuple[Entry, ...] = ()  # live logs; `bytes` of each one's rotated copy in rotated_bytes
    rotated_bytes: Mapping[Path, int] = field(default_factory=dict)
    trash: tuple[Entry, ...] = ()
    quarantine: tuple[Entry, ...] = ()  # quarantined files, each with its .reason beside it
    staging: tuple[Entry, ...] = ()
    spool: tuple[Entry, ...] = ()  # chunks with their sidecars (window set)
    history_records: int = 0


@dataclass
class Plan:
    job_checkpoints: list[str] = field(default_factory=list)  # job dirs whose *.pt go
    job_dirs: list[str] = field(default_factory=list)
    versions: list[tuple[str, int]] = field(default_factory=list)  # out of the repository
    checkpoints: list[tuple[str, int]] = field(default_factory=list)
    windows: list[int] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)  # files or directories deleted whole
    rotate: list[Path] = field(default_factory=list)
    spool: list[Path] = field(default_factory=list)  # chunks (their sidecars go with them)
    archive_records: int = 0  # the state's oldest window records moved to the windows log
    freed: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # kind -> bytes
    over_budget_bytes: int = 0  # > 0: the directory stays over its budget by this much

    @property
    def freed_bytes(self) -> int:
        return sum(self.freed.values())

    @property
    def empty(self) -> bool:
        return not (self.job_checkpoints or self.job_dirs or self.versions or self.checkpoints or self.windows
                    or self.paths or self.rotate or self.spool or self.archive_records)


def decide(view: DiskView, rules: Rules) -> Plan:
    plan = Plan()
    _jobs(view, rules, plan)
    _trials(view, plan)
    _versions(view, rules, plan)
    _windows(view, rules, plan)
    _records(view, rules, plan)
    _trash(view, rules, plan)
    _quarantine(view, plan)
    _spool(view, rules, plan)
    return plan


def _jobs(view: DiskView, rules: Rules, plan: Plan) -> None:
    records_until = view.now - rules.keep_windows * view.window_seconds
    for job in view.jobs:
        if job.name in view.active_jobs:
            continue
        if job.newest_mtime < records_until:
            plan.job_dirs.append(job.name)
            plan.freed["jobs"] += job.total_bytes
        elif job.checkpoint_bytes:
            plan.job_checkpoints.append(job.name)
            plan.freed["jobs"] += job.checkpoint_bytes


def _trials(view: DiskView, plan: Plan) -> None:
    if view.open_window < 0:
        return
    for trial in view.trials:  # written by an earlier window's profiling: that window is over
        if trial.mtime < view.open_window_start:
            plan.paths.append(trial.path)
            plan.freed["trials"] += trial.bytes


def versions_to_keep(versions: list[Version], serving: int | None, keep: int) -> set[int]:
    numbers = sorted({v.version for v in versions})
    kept = set(numbers[-keep:])
    if serving is not None:
        kept |= {n for n in numbers if n >= serving}  # the serving one, and any publish still in flight
    kept |= {v.version for v in versions if v.pinned}
    return kept


def _versions(view: DiskView, rules: Rules, plan: Plan) -> None:
    by_model: dict[str, list[Version]] = defaultdict(list)
    for version in view.versions:
        by_model[version.model].append(version)
    for model, versions in sorted(by_model.items()):
        kept = versions_to_keep(versions, view.serving.get(model), rules.keep_versions)
        for version in sorted(versions, key=lambda v: v.version):
            if version.version in kept:
                continue
            if version.repository_bytes:
                plan.versions.append((model, version.version))
                plan.freed["model_repository"] += version.repository_bytes if view.repository_inside else 0
            if version.checkpoint_bytes:
                plan.checkpoints.append((model, version.version))
                plan.freed["checkpoints"] += version.checkpoint_bytes


def _windows(view: DiskView, rules: Rules, plan: Plan) -> None:
    oldest_kept = view.closed - rules.keep_windows + 1
    for window, size in sorted(view.windows.items()):
        if window < oldest_kept and window not in view.needed_windows:
            plan.windows.append(window)
            plan.freed["windows"] += size


def _records(view: DiskView, rules: Rules, plan: Plan) -> None:
    plan.archive_records = max(0, view.history_records - rules.keep_window_records)
    oldest_kept = view.closed - rules.keep_window_records + 1
    for result in view.results:
        if result.window is not None and result.window < oldest_kept:
            plan.paths.append(result.path)
            plan.freed["other"] += result.bytes
    for log in view.logs:
        if log.bytes > rules.max_log_bytes:
            plan.rotate.append(log.path)  # the previous rotated copy is replaced
            plan.freed["logs"] += view.rotated_bytes.get(log.path, 0)


def _trash(view: DiskView, rules: Rules, plan: Plan) -> None:
    # (a version being staged now is seconds old; an older staging directory was interrupted)
    newest_first = sorted(view.trash, key=lambda e: e.mtime, reverse=True)
    stale_staging = [e for e in view.staging if e.mtime < view.now - view.window_seconds]
    for entry in [*newest_first[rules.keep_versions:], *stale_staging]:
        plan.paths.append(entry.path)
        plan.freed["model_repository"] += entry.bytes if view.repository_inside else 0


def _quarantine(view: DiskView, plan: Plan) -> None:
    files = [e for e in view.quarantine if e.path.suffix != ".reason"]
    for entry in sorted(files, key=lambda e: e.mtime, reverse=True)[QUARANTINE_KEPT:]:
        reason = entry.path.with_name(entry.path.name + ".reason")
        plan.paths += [entry.path, reason]
        plan.freed["quarantine"] += entry.bytes + sum(e.bytes for e in view.quarantine if e.path == reason)


def _spool(view: DiskView, rules: Rules, plan: Plan) -> None:
    projected = view.total_bytes - plan.freed_bytes
    if projected <= rules.budget_bytes:
        return
    chunks = sorted(view.spool, key=lambda e: (e.window if e.window is not None else -1, e.mtime, str(e.path)))
    consumed = [c for c in chunks if c.window is not None and c.window <= view.closed]
    open_ = [c for c in chunks if c not in consumed]
    if projected - sum(c.bytes for c in chunks) > rules.budget_bytes:
        droppable = consumed  # the open window's frames would be lost without reaching the budget
    else:
        droppable = consumed + open_
    for chunk in droppable:
        if projected <= rules.budget_bytes:
            break
        plan.spool.append(chunk.path)
        plan.freed["spool"] += chunk.bytes
        projected -= chunk.bytes
    plan.over_budget_bytes = max(0, projected - rules.budget_bytes)
