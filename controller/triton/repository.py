"""The model repository on disk: one directory per camera model plus the golden model.

    <root>/<model>/config.pbtxt      rendered from the typed spec
    <root>/<model>/ekya-spec.json    the spec itself (Triton ignores extra files)
    <root>/<model>/<N>/model.onnx    numbered versions; the newest is served

Versions are staged next to the repository (same filesystem, outside Triton's view) and moved in
with one atomic rename, so Triton never sees a half-written version directory. Removed versions go to
a trash directory beside the repository rather than vanishing, for post-mortems.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from common.atomic import atomic_write_text
from controller.triton.spec import ModelSpec, check_model_name, render_config

SPEC_FILE = "ekya-spec.json"
MODEL_FILE = "model.onnx"


class RepositoryError(RuntimeError):
    pass


class ModelRepository:
    def __init__(self, root: str | os.PathLike[str], keep_versions: int = 3) -> None:
        if keep_versions < 2:
            raise ValueError("keep_versions must be >= 2 so that a rollback has somewhere to go")
        self.root = Path(root).resolve()
        self.keep_versions = keep_versions
        self.root.mkdir(parents=True, exist_ok=True)
        self.staging = self.root.parent / f".{self.root.name}.staging"
        self.trash = self.root.parent / f".{self.root.name}.trash"

    # -- models ----------------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        check_model_name(name, allow_reserved=True)
        return self.root / name

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
        self.staging.mkdir(parents=True, exist_ok=True)
        stage = self.staging / f"{name}-{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        try:
            target_file = stage / MODEL_FILE
            shutil.copyfile(onnx_path, target_file)
            with open(target_file, "rb") as handle:
                os.fsync(handle.fileno())
            os.rename(stage, self.model_dir(name) / str(version))
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return version

    def remove_version(self, name: str, version: int, reason: str = "", keep: bool = True) -> None:
        """Take a version out of Triton's view in one rename; keep it in the trash (with the reason)
        for post-mortems, or delete it."""
        source = self.model_dir(name) / str(version)
        if not source.exists():
            return
        self.trash.mkdir(parents=True, exist_ok=True)
        target = self.trash / f"{name}-v{version}-{int(time.time())}-{uuid.uuid4().hex[:4]}"
        os.rename(source, target)
        if not keep:
            shutil.rmtree(target, ignore_errors=True)
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
