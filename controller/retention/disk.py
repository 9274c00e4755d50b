"""Retention's I/O: the data directory read into a DiskView (one walk), its bytes by kind, and a Plan carried
out. Every deletion stands alone: one that fails is logged and retried at the next pass."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from controller.layout import DataLayout
from controller.retention.history import archive_oldest, rotated
from controller.retention.policy import DiskView, Entry, JobDir, Plan, Version
from controller.state import ControllerState
from controller.triton.repository import STAGING_DIR, TRASH_DIR, ModelRepository
from protocol.spool import SIDECARS

log = logging.getLogger("controller")

KINDS = ("spool", "windows", "jobs", "trials", "model_repository", "checkpoints", "models", "logs", "state",
         "quarantine", "other")


@dataclass(frozen=True)
class FileStat:
    path: Path
    bytes: int
    mtime: float


def walk(root: Path) -> Iterator[FileStat]:
    """Every file under root (links not followed: a link counts as itself)."""
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:  # gone meanwhile, or unreadable
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    st = entry.stat(follow_symlinks=False)
                    yield FileStat(Path(entry.path), st.st_size, st.st_mtime)
            except OSError:
                continue


def tree_bytes(path: Path) -> tuple[int, float]:
    """Bytes under a file or directory, and the newest mtime in it."""
    if not path.is_dir():
        try:
            st = path.lstat()
        except OSError:
            return 0, 0.0
        return st.st_size, st.st_mtime
    total, newest = 0, 0.0
    for f in walk(path):
        total += f.bytes
        newest = max(newest, f.mtime)
    return total, newest


def _children(directory: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(directory)]
    except OSError:
        return []


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class DataDir:
    """The deployment's data directory as retention sees it."""

    def __init__(self, layout: DataLayout, repository: ModelRepository) -> None:
        self.layout = layout
        self.root = layout.root.resolve()
        self.repository = repository
        self.repository_inside = _inside(repository.root, self.root)

    # ------------------------------------------------------------------ usage
    def kind_of(self, path: Path) -> str:
        """The kind of a top-level entry of the data directory (a camera's directory is split further)."""
        repo = self.repository
        if path in (repo.root, repo.legacy_staging, repo.legacy_trash):
            return "model_repository"
        name = path.name
        if name in ("windows", "jobs", "trials", "checkpoints", "models", "quarantine"):
            return name
        if name.startswith(self.layout.windows_log.name):
            return "logs"
        if name.startswith(self.layout.state_file.name) or name.startswith(f".{self.layout.state_file.name}."):
            return "state"
        return "other"

    def usage(self) -> dict[str, int]:
        """Bytes under the data directory by kind (apparent sizes; a repository outside it is not counted)."""
        by_kind = dict.fromkeys(KINDS, 0)

        def add(kind: str, path: Path) -> None:
            by_kind[kind] += tree_bytes(path)[0]

        for entry in _children(self.root):
            if entry.name == "cameras" and entry.is_dir():
                for camera in _children(entry):  # each camera's spool, and its small files
                    for part in _children(camera) if camera.is_dir() else [camera]:
                        add("spool" if part.name == "spool" else "other", part)
            elif entry.name == self.layout.triton_dir.name and entry.is_dir():
                for part in _children(entry):  # Triton's log, beside its runtime copy
                    add("logs" if part.name.startswith(self.layout.triton_log.name) else "other", part)
            else:
                add(self.kind_of(entry), entry)
        return by_kind

    # ------------------------------------------------------------------ the view
    def view(self, state: ControllerState, now: float) -> DiskView:
        layout = self.layout
        total = sum(self.usage().values())
        active = {Path(r.job_dir).name: r for r in state.jobs.values()}
        window_start = state.t0 + max(state.window, 0) * state.window_seconds
        return DiskView(
            now=now, window_seconds=state.window_seconds, open_window=state.window, open_window_start=window_start,
            closed=state.closed, total_bytes=total, repository_inside=self.repository_inside,
            jobs=tuple(self._jobs()), active_jobs=frozenset(active),
            versions=tuple(self._versions(self._pinned(list(active)))),
            serving={name: cam.serving_version for name, cam in state.cameras.items() if cam.serving_version > 0},
            windows=self._windows(), needed_windows=frozenset(r.window - 1 for r in state.jobs.values()),
            trials=tuple(self._entries(layout.trials_dir)),
            results=tuple(self._results()),
            logs=tuple(self._entries_of([layout.triton_log, layout.windows_log])),
            rotated_bytes={p: tree_bytes(rotated(p))[0] for p in (layout.triton_log, layout.windows_log)},
            trash=tuple(self._entries_of(self.repository.trash_entries())),
            quarantine=tuple(Entry(f.path, f.bytes, f.mtime) for f in walk(self.root / "quarantine")),
            staging=tuple(self._entries_of(self.repository.staging_entries())),
            spool=tuple(self._spool()), history_records=len(state.history),
        )

    def _entries_of(self, paths: list[Path]) -> Iterator[Entry]:
        for path in paths:
            if path.exists():
                size, mtime = tree_bytes(path)
                yield Entry(path, size, mtime)

    def _entries(self, directory: Path) -> Iterator[Entry]:
        if directory.is_dir():
            yield from self._entries_of(sorted(directory.iterdir()))

    def _jobs(self) -> Iterator[JobDir]:
        if not self.layout.jobs_dir.is_dir():
            return
        for directory in sorted(self.layout.jobs_dir.iterdir()):
            if not directory.is_dir():
                continue
            files = list(walk(directory))
            yield JobDir(directory.name, newest_mtime=max((f.mtime for f in files), default=directory.stat().st_mtime),
                         checkpoint_bytes=sum(f.bytes for f in files if f.path.suffix == ".pt"),
                         total_bytes=sum(f.bytes for f in files))

    def _pinned(self, active_jobs: list[str]) -> set[Path]:
        """The base checkpoints running jobs started from (read from their job.json)."""
        pinned = set()
        for name in active_jobs:
            try:
                job = json.loads((self.layout.jobs_dir / name / "job.json").read_text())
                pinned.add(Path(job["base_checkpoint"]).resolve())
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return pinned

    def _versions(self, pinned: set[Path]) -> Iterator[Version]:
        found: dict[tuple[str, int], dict] = defaultdict(dict)
        repo = self.repository
        for model in repo.models():
            for version, directories in repo.version_dirs(model).items():  # both halves of a wrapped model
                found[(model, version)]["repository_bytes"] = sum(tree_bytes(d)[0] for d in directories)
        checkpoints = self.layout.checkpoints_dir
        if checkpoints.is_dir():
            for camera_dir in checkpoints.iterdir():
                for file in camera_dir.glob("v*.pt") if camera_dir.is_dir() else ():
                    if file.stem[1:].isdigit():
                        key = (camera_dir.name, int(file.stem[1:]))
                        found[key]["checkpoint_bytes"] = file.stat().st_size
                        found[key]["pinned"] = file.resolve() in pinned
        for (model, version), sizes in sorted(found.items()):
            yield Version(model, version, **sizes)

    def _windows(self) -> dict[int, int]:
        windows = {}
        if self.layout.windows_dir.is_dir():
            for directory in self.layout.windows_dir.iterdir():
                if directory.name.startswith("w") and directory.name[1:].isdigit():
                    windows[int(directory.name[1:])] = tree_bytes(directory)[0]
        return windows

    def _cameras(self) -> list[Path]:
        cameras = self.layout.root / "cameras"
        return sorted(p for p in cameras.iterdir() if p.is_dir()) if cameras.is_dir() else []

    def _results(self) -> Iterator[Entry]:
        for camera in self._cameras():
            for file in sorted((camera / "results").glob("w*.json")):
                if file.stem[1:].isdigit():
                    st = file.stat()
                    yield Entry(file, st.st_size, st.st_mtime, int(file.stem[1:]))

    def _spool(self) -> Iterator[Entry]:
        for camera in self._cameras():
            spool = camera / "spool"
            for window_dir in sorted(spool.glob("w*")) if spool.is_dir() else ():
                if not window_dir.name[1:].isdigit():
                    continue
                for chunk in sorted(window_dir.glob("chunk-*.npz")):
                    parts = [chunk, *(chunk.with_suffix(s) for s in SIDECARS)]
                    size = sum(tree_bytes(p)[0] for p in parts)
                    yield Entry(chunk, size, tree_bytes(chunk)[1], int(window_dir.name[1:]))

    # ------------------------------------------------------------------ carrying a plan out
    def apply(self, plan: Plan, state: ControllerState) -> None:
        layout = self.layout
        for name in plan.job_checkpoints:
            for file in (layout.jobs_dir / name).rglob("*.pt"):
                _remove(file)
        for name in plan.job_dirs:
            _remove(layout.jobs_dir / name)
        for model, version in plan.versions:
            try:
                self.repository.remove_version(model, version, keep=False)
            except OSError as exc:
                log.warning("retention: could not remove %s version %d: %s", model, version, exc)
        for camera, version in plan.checkpoints:
            _remove(layout.checkpoint(camera, version))
        for window in plan.windows:
            _remove(layout.windows_dir / f"w{window:06d}")
        for path in plan.paths:
            _remove(path)
            if path.parent.name in (STAGING_DIR, TRASH_DIR):  # a model's staging or trash, now maybe empty
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
        for path in plan.rotate:
            rotate_log(path)
        for chunk in plan.spool:
            for part in (chunk, *(chunk.with_suffix(s) for s in SIDECARS)):
                _remove(part)
        archive_oldest(state, layout, plan.archive_records)


def rotate_log(path: Path) -> None:
    """Copy-truncate: the writer (tritonserver appends with O_APPEND) keeps its descriptor and goes on at the
    file's new end; lines written between the copy and the truncation are lost."""
    try:
        shutil.copyfile(path, rotated(path))
        os.truncate(path, 0)
    except OSError as exc:
        log.warning("retention: could not rotate %s: %s", path, exc)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("retention: could not delete %s: %s", path, exc)


def discard_bulk(layout: DataLayout, repository_root: Path) -> int:
    """A deployment whose run is over (one of the demo's scheduler runs): its bulk goes (models, versions,
    checkpoints, jobs, labelled windows, spools, Triton's runtime copy) and its records stay (the state, the
    windows log, the cameras' results, the Triton log). Returns the bytes freed."""
    root = layout.root.resolve()
    repository_root = Path(repository_root).resolve()
    bulk = [layout.checkpoints_dir, layout.jobs_dir, layout.trials_dir, layout.windows_dir, layout.models_dir,
            layout.triton_dir / "runtime", *(layout.spool_root(p.name) for p in (root / "cameras").glob("*"))]
    if _inside(repository_root, root):  # its staging and trash are inside it (earlier releases': beside it)
        bulk += [repository_root, repository_root.with_name(f".{repository_root.name}.staging"),
                 repository_root.with_name(f".{repository_root.name}.trash")]
    freed = 0
    for path in bulk:
        if path.exists():
            freed += tree_bytes(path)[0]
            _remove(path)
    return freed
