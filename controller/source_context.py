"""A configured camera's source: its registered kind and the deployment context the kind's hooks need."""

from __future__ import annotations

from controller.config import DeploymentConfig
from sources import SourceContext, SourceKind, source_kind


def source_context(config: DeploymentConfig, camera_name: str) -> SourceContext:
    return SourceContext(camera=camera_name, crop_size=config.edge_model.input_size,
                         window_seconds=config.window_seconds, history_windows=config.bootstrap.history_windows,
                         classes=tuple(config.classes))


def kind_of(config: DeploymentConfig, camera_name: str) -> SourceKind:
    return source_kind(config.camera(camera_name).source.kind)
