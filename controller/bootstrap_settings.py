"""From a deployment config to the trainer's bootstrap (initial edge models + golden model)."""

from __future__ import annotations

from pathlib import Path

from controller.config import DeploymentConfig, GpuResources
from controller.source_context import kind_of, source_context
from sources import SourceError


def bootstrap_settings(config: DeploymentConfig, *, edge: bool = True, golden: bool = True):
    """The trainer's bootstrap settings; `edge`/`golden` False: that model comes from the user's file."""
    from trainer.bootstrap import BootstrapSettings

    return BootstrapSettings(
        classes=tuple(config.classes),
        edge=edge,
        golden=golden,
        edge_family=config.edge_model.family,
        edge_hidden=config.edge_model.hidden,
        edge_input_size=config.edge_model.input_size,
        golden_family=config.golden_model.family,
        golden_hidden=config.golden_model.hidden,
        golden_input_size=config.golden_model.input_size,
        history_windows=config.bootstrap.history_windows,
        edge_crops=config.bootstrap.edge_crops,
        edge_epochs=config.bootstrap.edge_epochs,
        golden_crops=config.bootstrap.golden_crops,
        golden_epochs=config.bootstrap.golden_epochs,
    )


def bootstrap_cache_dir(config: DeploymentConfig) -> Path:
    return Path(config.data.dir) / "models"


def bootstrap_data(config: DeploymentConfig):
    """What the bootstrap trains on, from each camera's source kind: the labelled history (windows
    -history_windows..-1) and, where every kind has its own, the golden model's crops."""
    from trainer.bootstrap import BootstrapData
    from trainer.streams.base import concat

    cameras = [(c, kind_of(config, c.name), source_context(config, c.name)) for c in config.cameras]
    for camera, kind, ctx in cameras:
        if not kind.has_ground_truth(camera.source, ctx):
            raise SourceError(f"camera {camera.name!r}: its {kind.name} source has no labels to bootstrap from")
    b = config.bootstrap
    windows = list(range(-b.history_windows, 0))
    per_window = -(-b.edge_crops // (len(cameras) * len(windows)))  # make only the crops trained on

    def history():
        return concat([kind.bootstrap_windows(camera.source, ctx, windows, per_window)
                       for camera, kind, ctx in cameras], camera="shared")

    def golden_part(crops: int, salt: int):
        per_camera = max(1, crops // len(cameras))
        return concat([kind.golden_windows(camera.source, ctx, per_camera, salt)
                       for camera, kind, ctx in cameras], camera="all")

    golden = None
    if all(kind.golden_windows is not None for _, kind, _ in cameras):
        def golden():
            return golden_part(b.golden_crops, 1), golden_part(max(200, b.golden_crops // 6), 2)

    return BootstrapData(cameras=[c.name for c, _, _ in cameras],
                         identity=[kind.identity(camera.source, ctx) for camera, kind, ctx in cameras],
                         history=history, golden=golden, trained_on=f"windows {windows}")


def bootstrap_for(config: DeploymentConfig, *, progress: bool = True, cache_dir: Path | None = None,
                  force: bool = False, edge: bool = True, golden: bool = True):
    """Train (or reuse) the initial models for the config's cameras (`edge`/`golden` False: not that one)."""
    from trainer.bootstrap import bootstrap_from_data

    device = "cuda:0" if isinstance(config.resources, GpuResources) else "cpu"
    return bootstrap_from_data(bootstrap_data(config), bootstrap_settings(config, edge=edge, golden=golden),
                               cache_dir or bootstrap_cache_dir(config), device=device, progress=progress,
                               force=force)
