"""Serving through Triton: the reconcile core's Serving port on a ServingManager and a TritonClient."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from controller.labelling import GOLDEN_MODEL, GoldenInput, accuracy_through_triton, golden_labels
from controller.triton.client import TritonClient
from controller.triton.serving import ServingManager
from controller.triton.spec import ModelSpec


class TritonServing:
    def __init__(self, manager: ServingManager, client: TritonClient, requests_in_flight: int = 1,
                 golden: GoldenInput | None = None) -> None:
        self.manager = manager
        self.client = client
        self.in_flight = requests_in_flight
        self.golden = golden  # a user golden model's input and class map (None: the bootstrapped one)
        # Serving changes (a publish, an instance count) and a restarted server's reload are serialised:
        # a publish whose load failed while Triton was down removes its version before the reload looks.
        self.changes = threading.Lock()

    def golden_labels(self, images: np.ndarray) -> np.ndarray:
        return golden_labels(self.client, images, in_flight=self.in_flight, golden=self.golden)

    def accuracy(self, model: str, images: np.ndarray, labels: np.ndarray) -> float | None:
        return accuracy_through_triton(self.client, model, images, labels, in_flight=self.in_flight)

    def publish(self, model: str, onnx_path: Path) -> int:
        with self.changes:
            return self.manager.publish(model, onnx_path).version

    def set_instances(self, model: str, count: int, gpus: tuple[int, ...] | None) -> None:
        with self.changes:
            self.manager.set_instances(model, count, gpus)

    def reload_after_restart(self) -> list[str]:
        """A restarted server: a fresh channel to it, and every model with versions loaded from the
        repository as it is now (the version policy serves the newest, as before the restart)."""
        self.client.reconnect()
        with self.changes:
            return self.manager.load_all()

    def served_versions(self, models: list[str]) -> dict[str, int | None]:
        ready: dict[str, int] = {}
        for entry in self.client.repository_index():
            name, version = entry.get("name"), entry.get("version")
            if entry.get("state") == "READY" and version and str(version).isdigit():
                ready[name] = max(ready.get(name, 0), int(version))
        return {name: ready.get(name) for name in models}

    def repository_versions(self, model: str) -> list[int]:
        return self.manager.repository.versions(model)

    def retire_version(self, model: str, version: int, reason: str) -> None:
        self.manager.repository.remove_version(model, version, reason=reason)
        if self.manager.repository.versions(model):
            self.manager.load(model, removing=True)

    # -- start-up ------------------------------------------------------------------------------
    def ensure_model(self, spec: ModelSpec) -> None:
        """Write (or update) a model's spec, so that versions can be published to it."""
        self.manager.ensure_model(spec)

    def has_versions(self, model: str) -> bool:
        return bool(self.manager.repository.versions(model))

    def ensure_spec_fields(self, model: str, fields: dict) -> bool:
        """Bring a written spec's `fields` (e.g. capture settings from the config) up to date; True when
        the spec changed (a loaded model then needs a reload)."""
        spec = self.manager.repository.read_spec(model)
        if all(getattr(spec, key) == value for key, value in fields.items()):
            return False
        self.manager.ensure_model(ModelSpec.model_validate({**spec.model_dump(), **fields}))
        return True

    def ensure_loaded(self, models: list[str], reload: Sequence[str] = ()) -> None:
        """Load what is not loaded, and reload `reload` (their config changed)."""
        for name in models:
            if name in reload or not self.manager.ready(name):
                self.manager.load(name)

    def instance_count(self, model: str) -> int:
        return self.manager.repository.read_spec(model).instance_count


__all__ = ["GOLDEN_MODEL", "TritonServing"]
