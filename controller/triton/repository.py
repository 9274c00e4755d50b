"""The model repository on disk: one directory per camera model plus the golden model.

    <root>/<model>/config.pbtxt      rendered from the typed spec
    <root>/<model>/ekya-spec.json    the spec itself (Triton ignores extra files)
    <root>/<model>/<N>/model.onnx    numbered versions; the newest is served

    <root>/<model>/.staging/         versions being written (Triton reads only numeric version dirs)
    <root>/<model>/.trash/           versions taken out, kept for post-mortems

A version is staged inside its model's directory, so it is on the repository's own filesystem whatever the
volume (a tmpfs, a container volume, a hostPath) and needs no write access beside the repository: moving it
in is one atomic rename, and Triton never sees a half-written version directory. The staging and trash
directories live per model and not at the top level because Triton lists every top-level directory, hidden
ones included, as a model in its repository index; inside a model directory it reads only numeric ones.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from common.atomic import atomic_write_text
from controller.triton.spec import ModelSpec, check_model_name, render_config

SPEC_FILE = "ekya-spec.json"
MODEL_FILE = "model.onnx"
STAGING_DIR = ".staging"
TRASH_DIR = ".trash"

log = logging.getLogger("controller")


class RepositoryError(RuntimeError):
    pass


class ModelRepository:
    def __init__(self, root: str | os.PathLike[str], keep_versions: int = 3) -> None:
        if keep_versions < 2:
            raise ValueError("keep_versions must be >= 2 so that a rollback has somewhere to go")
        self.root = Path(root).resolve()
        self.keep_versions = keep_versions
        self.root.mkdir(parents=True, exist_ok=True)
        # where earlier releases staged and trashed, beside the root: read (and cleaned) only
        self.legacy_staging = self.root.parent / f".{self.root.name}.staging"
        self.legacy_trash = self.root.parent / f".{self.root.name}.trash"

    # -- models ----------------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        check_model_name(name, allow_reserved=True)
        return self.root / name

    def staging_dir(self, name: str) -> Path:
        return self.model_dir(name) / STAGING_DIR

    def trash_dir(self, name: str) -> Path:
        return self.model_dir(name) / TRASH_DIR

    def staging_entries(self) -> list[Path]:
        """Versions being staged now, or left by an interrupted publish."""
        return self._entries_in(STAGING_DIR, self.legacy_staging)

    def trash_entries(self) -> list[Path]:
        """Versions taken out of Triton's view and kept for post-mortems (each may hold a REASON file)."""
        return self._entries_in(TRASH_DIR, self.legacy_trash)

    def _entries_in(self, subdir: str, legacy: Path) -> list[Path]:
        found: list[Path] = []
        for parent in [*(p / subdir for p in self.root.iterdir()), legacy]:
            if parent.is_dir():
                found += sorted(parent.iterdir())
        return found

    def clean_staging(self) -> list[Path]:
        """Remove what interrupted publishes left behind. Only for the repository's one writer, at its start
        (a publish in flight stages there); returns what was removed."""
        removed = self.staging_entries()
        for entry in removed:
            shutil.rmtree(entry, ignore_errors=True)
        for directory in [*(p / STAGING_DIR for p in self.root.iterdir()), self.legacy_staging]:
            _remove_if_empty(directory)
        if removed:
            log.info("removed %d staging leftover(s) of interrupted publishes: %s", len(removed),
                     ", ".join(str(p) for p in removed))
        return removed

    def models(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "config.pbtxt").is_file())

    def has_model(self, name: str) -> bool:
        return (self.model_dir(name) / "config.pbtxt").is_file()

    def read_spec(self, name: str) -> ModelSpec:
        path = self.model_dir(name) / SPEC_FILE
        if not path.is_file():
            raise RepositoryError(f"model {name!r} is not in the repository {self.root}")
        return ModelSpec.model_validate_json(path.read_text())

    def write_spec(self, spec: ModelSpec) -> Path:
        directory = self.model_dir(spec.name)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / SPEC_FILE, spec.model_dump_json(indent=2) + "\n")
        return atomic_write_text(directory / "config.pbtxt", render_config(spec))

    # -- versions --------------------------------------------------------------------------------
    def versions(self, name: str) -> list[int]:
        directory = self.model_dir(name)
        if not directory.is_dir():
            return []
        found = []
        for entry in directory.iterdir():
            if entry.name.isdigit() and (entry / MODEL_FILE).is_file():
                found.append(int(entry.name))
        return sorted(found)

    def latest_version(self, name: str) -> int | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def add_version(self, name: str, onnx_path: str | os.PathLike[str]) -> int:
        """Copy `onnx_path` in as the next version, atomically; returns the version number."""
        if not self.has_model(name):
            raise RepositoryError(f"write the spec of {name!r} before adding versions")
        existing = [int(p.name) for p in self.model_dir(name).iterdir() if p.name.isdigit()]
        version = max(existing, default=0) + 1
        staging = self.staging_dir(name)
        staging.mkdir(exist_ok=True)
        stage = staging / f"v{version}-{uuid.uuid4().hex[:8]}"
        try:
            stage.mkdir()
            target_file = stage / MODEL_FILE
            shutil.copyfile(onnx_path, target_file)
            with open(target_file, "rb") as handle:
                os.fsync(handle.fileno())
            os.rename(stage, self.model_dir(name) / str(version))
            _fsync_dir(self.model_dir(name))
        except BaseException:  # an error midway (disk full, killed) leaves neither half a version nor a stage
            shutil.rmtree(stage, ignore_errors=True)
            _remove_if_empty(staging)
            raise
        _remove_if_empty(staging)
        return version

    def remove_version(self, name: str, version: int, reason: str = "", keep: bool = True) -> None:
        """Take a version out of Triton's view in one rename; keep it in the trash (with the reason)
        for post-mortems, or delete it."""
        source = self.model_dir(name) / str(version)
        if not source.exists():
            return
        trash = self.trash_dir(name)
        trash.mkdir(exist_ok=True)
        target = trash / f"{name}-v{version}-{int(time.time())}-{uuid.uuid4().hex[:4]}"
        os.rename(source, target)
        if not keep:
            shutil.rmtree(target, ignore_errors=True)
            _remove_if_empty(trash)
        elif reason:
            (target / "REASON").write_text(reason + "\n")

    def prune(self, name: str) -> list[int]:
        """Keep the newest `keep_versions` versions on disk; returns the removed ones."""
        versions = self.versions(name)
        removed = versions[: max(0, len(versions) - self.keep_versions)]
        for version in removed:
            self.remove_version(name, version, keep=False)
        return removed

    def describe(self) -> dict[str, dict]:
        return {
            name: {"versions": self.versions(name), "instances": self.read_spec(name).instance_count}
            for name in self.models()
            if (self.model_dir(name) / SPEC_FILE).is_file()
        }

    def dump(self) -> str:
        return json.dumps(self.describe(), indent=2)


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:  # not empty (another publish stages there), or gone
        pass


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (a crash after it must not bring the old listing back)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
