"""The model repository on disk: one directory per camera model plus the golden model.

    <root>/<model>/config.pbtxt      rendered from the typed spec
    <root>/<model>/ekya-spec.json    the spec itself (Triton ignores extra files)
    <root>/<model>/<N>/model.onnx    numbered versions; the newest is served

A wrapped model (ModelSpec.wrapped: capture in front of a backend that cannot capture) is two Triton
models with the same version numbers:

    <root>/<model>/config.pbtxt             the capture wrapper (python backend), the public name
    <root>/<model>/<N>/model.py             ...calling version N of the inner model, and
    <root>/<model>/<N>/ekya_capture.py      ...the capture module it writes samples with
    <root>/<model>.onnx/config.pbtxt        the ONNX model (onnxruntime), instances and devices
    <root>/<model>.onnx/<N>/model.onnx

A version is there when both halves are. The inner half goes in first and out last, and is loaded first
when a version is added, last when one is taken out: the public model never calls a missing version.

    <root>/<model>/.staging/         versions being written (Triton reads only numeric version dirs)
    <root>/<model>/.trash/           versions taken out (of both halves), kept for post-mortems

A version is staged inside the model directory it goes to, so it is on the repository's own filesystem
whatever the volume (a tmpfs, a container volume, a hostPath) and needs no write access beside the
repository: moving it in is one atomic rename, and Triton never sees a half-written version directory.
Staging and trash live per model and not at the top level because Triton lists every top-level directory,
hidden ones included, as a model in its repository index; inside a model directory it reads only numeric
ones.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from common.atomic import atomic_write_bytes, atomic_write_text
from controller.triton.spec import (
    INNER_SUFFIX,
    ModelSpec,
    check_model_name,
    inner_model_name,
    render_config,
    render_inner_config,
)
from controller.triton.wrapper import WRAPPER_MODEL_FILE, wrapper_files

SPEC_FILE = "ekya-spec.json"
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"
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

    def inner_dir(self, name: str) -> Path:
        """Where a wrapped model's ONNX versions live (the inner Triton model)."""
        return self.root / inner_model_name(check_model_name(name, allow_reserved=True))

    def models(self) -> list[str]:
        """Our models, by their public names (a wrapped model's inner half is not one of them)."""
        return sorted(p.name for p in self.root.iterdir()
                      if (p / CONFIG_FILE).is_file() and not p.name.endswith(INNER_SUFFIX))

    def has_model(self, name: str) -> bool:
        return (self.model_dir(name) / CONFIG_FILE).is_file()

    def is_wrapped(self, name: str) -> bool:
        return (self.inner_dir(name) / CONFIG_FILE).is_file()

    def triton_models(self, name: str) -> list[str]:
        """The Triton models that serve `name`, in the order they are loaded when a version is added."""
        return [inner_model_name(name), name] if self.is_wrapped(name) else [name]

    def loadable(self) -> list[str]:
        """Every Triton model to load after a (re)start, each wrapped model's inner half before it."""
        return [m for name in self.models() if self.versions(name) for m in self.triton_models(name)]

    def read_spec(self, name: str) -> ModelSpec:
        path = self.model_dir(name) / SPEC_FILE
        if not path.is_file():
            raise RepositoryError(f"model {name!r} is not in the repository {self.root}")
        return ModelSpec.model_validate_json(path.read_text())

    def write_spec(self, spec: ModelSpec) -> Path:
        """Write the spec and its config(s); a model whose wrapping changed (capture turned on or off for
        a backend that cannot capture) has its versions laid out anew first, to be reloaded after."""
        directory = self.model_dir(spec.name)
        directory.mkdir(parents=True, exist_ok=True)
        if spec.wrapped != self.is_wrapped(spec.name):
            self._relayout(spec)
        atomic_write_text(directory / SPEC_FILE, spec.model_dump_json(indent=2) + "\n")
        if spec.wrapped:
            self.inner_dir(spec.name).mkdir(exist_ok=True)
            atomic_write_text(self.inner_dir(spec.name) / CONFIG_FILE, render_inner_config(spec))
        return atomic_write_text(directory / CONFIG_FILE, render_config(spec))

    def _relayout(self, spec: ModelSpec) -> None:
        """Wrap (the ONNX files move to the inner model, the wrapper's files take their place) or unwrap
        (the reverse) every version of an existing model. Each file is written before its old copy goes."""
        public, inner = self.model_dir(spec.name), self.inner_dir(spec.name)
        if spec.wrapped:
            inner.mkdir(exist_ok=True)
            for version in _numbered(public, MODEL_FILE):
                if not (inner / str(version) / MODEL_FILE).is_file():
                    self._stage_into(inner / str(version), {MODEL_FILE: public / str(version) / MODEL_FILE})
                for file_name, content in wrapper_files().items():
                    atomic_write_bytes(public / str(version) / file_name, content)
                (public / str(version) / MODEL_FILE).unlink()
            return
        for version in _numbered(inner, MODEL_FILE):
            target = public / str(version)
            target.mkdir(exist_ok=True)
            shutil.copyfile(inner / str(version) / MODEL_FILE, target / MODEL_FILE)
            for file_name in wrapper_files():
                (target / file_name).unlink(missing_ok=True)
        self._to_trash(inner, f"{inner.name}-unwrapped", spec.name)

    # -- versions --------------------------------------------------------------------------------
    def versions(self, name: str) -> list[int]:
        directory = self.model_dir(name)
        if not directory.is_dir():
            return []
        if self.is_wrapped(name):
            return sorted(set(_numbered(directory, WRAPPER_MODEL_FILE)) & set(_numbered(self.inner_dir(name), MODEL_FILE)))
        return _numbered(directory, MODEL_FILE)

    def model_file(self, name: str, version: int) -> Path:
        """The ONNX file of a version."""
        directory = self.inner_dir(name) if self.is_wrapped(name) else self.model_dir(name)
        return directory / str(version) / MODEL_FILE

    def version_dirs(self, name: str) -> dict[int, list[Path]]:
        """Every numbered directory of a model, both halves of a wrapped one (for disk accounting)."""
        found: dict[int, list[Path]] = {}
        for directory in (self.model_dir(name), self.inner_dir(name)):
            if directory.is_dir():
                for entry in directory.iterdir():
                    if entry.name.isdigit() and entry.is_dir():
                        found.setdefault(int(entry.name), []).append(entry)
        return found

    def latest_version(self, name: str) -> int | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def add_version(self, name: str, onnx_path: str | os.PathLike[str]) -> int:
        """Copy `onnx_path` in as the next version, atomically; returns the version number."""
        if not self.has_model(name):
            raise RepositoryError(f"write the spec of {name!r} before adding versions")
        version = max(self.version_dirs(name), default=0) + 1
        if not self.is_wrapped(name):
            self._stage_into(self.model_dir(name) / str(version), {MODEL_FILE: Path(onnx_path)})
            return version
        public = set(_numbered(self.model_dir(name), WRAPPER_MODEL_FILE))
        inner = {int(e.name) for e in self.inner_dir(name).iterdir() if e.name.isdigit()}
        for stray in inner - public:  # an add cut short: the inner half would be loaded, never called
            self._to_trash(self.inner_dir(name) / str(stray), f"{inner_model_name(name)}-v{stray}-stray", name)
        self._stage_into(self.inner_dir(name) / str(version), {MODEL_FILE: Path(onnx_path)})
        self._stage_into(self.model_dir(name) / str(version), wrapper_files())
        return version

    def _stage_into(self, target: Path, files: dict[str, Path | bytes]) -> None:
        """Write `files` (a source path or the bytes) into a staged directory, fsynced, and move it to
        `target` with one rename; an error midway (disk full, killed) leaves neither half a version nor
        a stage."""
        staging = target.parent / STAGING_DIR
        staging.mkdir(exist_ok=True)
        stage = staging / f"v{target.name}-{uuid.uuid4().hex[:8]}"
        try:
            stage.mkdir()
            for file_name, source in files.items():
                if isinstance(source, bytes):
                    (stage / file_name).write_bytes(source)
                else:
                    shutil.copyfile(source, stage / file_name)
                with open(stage / file_name, "rb") as handle:
                    os.fsync(handle.fileno())
            os.rename(stage, target)
            _fsync_dir(target.parent)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            _remove_if_empty(staging)
            raise
        _remove_if_empty(staging)

    def _to_trash(self, source: Path, label: str, name: str) -> Path:
        """Move `source` (of model `name`, either half) into the model's trash in one rename."""
        trash = self.trash_dir(name)
        trash.mkdir(exist_ok=True)
        target = trash / f"{label}-{int(time.time())}-{uuid.uuid4().hex[:4]}"
        os.rename(source, target)
        return target

    def remove_version(self, name: str, version: int, reason: str = "", keep: bool = True) -> None:
        """Take a version out of Triton's view in one rename; keep it in the trash (with the reason)
        for post-mortems, or delete it."""
        # the public half first: a wrapped model's inner half goes last
        for source in (self.model_dir(name) / str(version), self.inner_dir(name) / str(version)):
            if not source.exists():
                continue
            target = self._to_trash(source, f"{source.parent.name}-v{version}", name)
            if not keep:
                shutil.rmtree(target, ignore_errors=True)
                _remove_if_empty(target.parent)
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


def _numbered(directory: Path, file_name: str) -> list[int]:
    """The version numbers of `directory` whose directory holds `file_name`."""
    if not directory.is_dir():
        return []
    return sorted(int(e.name) for e in directory.iterdir() if e.name.isdigit() and (e / file_name).is_file())


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
