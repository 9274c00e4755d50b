"""The deployment config agrees with the modules that consume it (trainer models, synthetic streams)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from controller.config import EdgeModelConfig, GoldenModelConfig, load_config
from tests.repo import REPO_ROOT

ROOT = REPO_ROOT
CONFIGS = [
    ROOT / "examples" / "deployment.yaml",
    ROOT / "examples" / "gpu-deployment.yaml",
    ROOT / "docker" / "config" / "deployment.yaml",
    ROOT / "bench" / "configs" / "tight-6cams.yaml",
]


def test_model_families_are_the_ones_the_trainer_builds() -> None:
    from trainer import models  # imports torch: kept inside the test
    edge = set(typing.get_args(EdgeModelConfig.model_fields["family"].annotation))
    golden = set(typing.get_args(GoldenModelConfig.model_fields["family"].annotation))
    assert edge == set(models.EDGE_FAMILIES)
    assert golden == set(models.GOLDEN_FAMILIES)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_camera_makes_a_valid_synthetic_stream(path: Path) -> None:
    from controller.source_context import source_context
    from sources.synthetic import stream_spec

    cfg = load_config(path)
    for name in cfg.camera_names:
        spec = stream_spec(cfg.camera(name).source, source_context(cfg, name))
        assert spec.crop_size == cfg.edge_model.input_size
        assert spec.frames_per_window >= 1
        drift = cfg.camera(name).source.drift
        assert (spec.drift_speed, spec.drift_magnitude, spec.start_window) == (
            drift.speed, drift.magnitude, drift.start_window)
