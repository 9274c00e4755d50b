"""Serving operations that touch both the repository and the running server.

publish: validate first (nothing is written for a rejected model), move the version in atomically,
load it with a timeout; a version that fails to load is removed and the previous one keeps serving.
Instance-count changes persist in config.pbtxt and are applied with a reload, which Triton performs
without failing in-flight requests. A wrapped model (capture in front of the ONNX model, see
controller/triton/repository.py) is loaded as its two Triton models: the inner one first when a version
comes in or the instances change, last when a version goes out, so the public one never calls a version
that is not loaded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.triton.client import TritonClient, TritonClientError
from controller.triton.repository import ModelRepository, RepositoryError
from controller.triton.spec import ModelSpec
from controller.triton.validation import InvalidModelError, validate_onnx

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The new version was not published; the previous version (if any) is still serving."""


@dataclass(frozen=True)
class PublishResult:
    model: str
    version: int
    load_seconds: float
    max_abs_diff: float | None


class ServingManager:
    def __init__(self, repository: ModelRepository, client: TritonClient, load_timeout_s: float = 60.0) -> None:
        self.repository = repository
        self.client = client
        self.load_timeout_s = load_timeout_s

    def ensure_model(self, spec: ModelSpec) -> None:
        """Write (or update) the model's spec without loading it."""
        self.repository.write_spec(spec)

    def publish(
        self,
        name: str,
        onnx_path: str | Path,
        probe: np.ndarray | None = None,
        expected: np.ndarray | None = None,
    ) -> PublishResult:
        spec = self.repository.read_spec(name)
        try:
            report = validate_onnx(onnx_path, spec, probe, expected)
        except InvalidModelError as exc:
            raise PublishError(f"{name}: rejected before publishing: {exc}") from exc
        version = self.repository.add_version(name, onnx_path)
        started = time.monotonic()
        try:
            self.load(name)
        except TritonClientError as exc:
            self.repository.remove_version(name, version, reason=f"load failed: {exc}")
            self._reload_quietly(name)
            raise PublishError(f"{name}: version {version} failed to load, previous version kept: {exc}") from exc
        load_seconds = time.monotonic() - started
        self.repository.prune(name)
        log.info("%s: serving version %d (load %.2fs)", name, version, load_seconds)
        return PublishResult(name, version, load_seconds, report.max_abs_diff)

    def deploy(self, spec: ModelSpec, onnx_path: str | Path, probe: np.ndarray | None = None,
               expected: np.ndarray | None = None) -> PublishResult:
        """Create or update a model and publish `onnx_path` as its newest version."""
        self.ensure_model(spec)
        return self.publish(spec.name, onnx_path, probe, expected)

    def rollback(self, name: str) -> int:
        """Retire the newest version and serve the one before it; returns the version now served."""
        versions = self.repository.versions(name)
        if len(versions) < 2:
            raise RepositoryError(f"{name}: no earlier version on disk to roll back to")
        self.repository.remove_version(name, versions[-1], reason="rolled back")
        self.load(name, removing=True)
        return versions[-2]

    def set_instances(self, name: str, count: int, gpus: tuple[int, ...] | None = None) -> bool:
        """Persist a new instance count (and, for GPU instances, the devices they are pinned to) and
        apply it; returns False when it was already so."""
        spec = self.repository.read_spec(name)
        wanted_gpus = spec.gpus if gpus is None or spec.instance_kind != "KIND_GPU" else tuple(gpus)
        if spec.instance_count == count and spec.gpus == wanted_gpus:
            return False
        updated = spec.model_copy(update={"instance_count": count, "gpus": wanted_gpus})
        ModelSpec.model_validate(updated.model_dump())  # re-run the bounds checks
        self.repository.write_spec(updated)
        try:
            self.load(name)
        except TritonClientError:
            self.repository.write_spec(spec)
            self._reload_quietly(name)
            raise
        return True

    def load(self, name: str, removing: bool = False) -> None:
        """(Re)load the Triton model(s) that serve `name` from the repository as it is now; `removing`:
        a version was taken out (a wrapped model's public half goes first then)."""
        models = self.repository.triton_models(name)
        for model in reversed(models) if removing else models:
            self.client.load(model, timeout_s=self.load_timeout_s)

    def ready(self, name: str) -> bool:
        return all(self.client.model_ready(model) for model in self.repository.triton_models(name))

    def load_all(self) -> list[str]:
        """Load every model that has a version on disk (after a server restart, say)."""
        loaded = []
        for name in self.repository.models():
            if self.repository.versions(name):
                self.load(name)
                loaded.append(name)
        return loaded

    def _reload_quietly(self, name: str) -> None:
        if not self.repository.versions(name):
            return
        try:
            self.load(name)
        except TritonClientError as exc:
            log.error("%s: reload after a failed change also failed: %s", name, exc)
