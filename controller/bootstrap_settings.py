"""From a deployment config to the trainer's bootstrap (initial edge models + golden model)."""

from __future__ import annotations

from pathlib import Path

from controller.config import DeploymentConfig, GpuResources


def bootstrap_settings(config: DeploymentConfig):
    from trainer.bootstrap import BootstrapSettings

    return BootstrapSettings(
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


def bootstrap_for(config: DeploymentConfig, *, progress: bool = True, cache_dir: Path | None = None):
    """Train (or reuse) the initial models for the config's cameras."""
    from controller.sources import stream_spec
    from trainer.bootstrap import bootstrap

    synthetic = [stream_spec(config, c.name) for c in config.cameras if c.source.kind == "synthetic"]
    if len(synthetic) != len(config.cameras):
        raise NotImplementedError("bootstrap from folder sources: run `ekya bootstrap` with the manifest first")
    device = "cuda:0" if isinstance(config.resources, GpuResources) else "cpu"
    return bootstrap(synthetic, bootstrap_settings(config), cache_dir or bootstrap_cache_dir(config),
                     device=device, progress=progress)
