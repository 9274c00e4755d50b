"""Capture settings: the sampling rate per camera (the deployment's by default), where captured samples
land (as the controller and as Triton sees it), and the camera models' specs the controller writes."""

from __future__ import annotations

from pathlib import Path

from controller.config import parse_config
from controller.labelling import GOLDEN_MODEL
from controller.runtime.deployment import Deployment
from controller.triton.spec import render_config

CAMERAS = [{"name": "cam0", "source": {"kind": "synthetic", "seed": 1}},
           {"name": "cam1", "source": {"kind": "synthetic", "seed": 2}, "label_sampling_rate": 0.5}]


def test_a_camera_may_sample_at_its_own_rate_and_captures_land_under_the_data_dir(tmp_path: Path) -> None:
    config = parse_config({"cameras": CAMERAS, "label_sampling_rate": 0.2, "data": {"dir": "d", "disk_budget_mb": 64}},
                          base_dir=tmp_path)
    assert config.sampling_rate("cam0") == 0.2 and config.sampling_rate("cam1") == 0.5
    assert config.capture_dir == tmp_path / "d" / "capture"
    assert config.capture_dir_for_triton == str(tmp_path / "d" / "capture")
    assert config.capture_budget_bytes == 64 * 2**20 // 2 // 4


def test_a_triton_in_another_container_sees_the_capture_directory_at_its_own_path(tmp_path: Path) -> None:
    config = parse_config({"cameras": CAMERAS, "data": {"dir": "d", "capture_dir": "shared/cap"},
                           "triton": {"mode": "external", "url": "triton:8001", "capture_dir": "/capture"}},
                          base_dir=tmp_path)
    assert config.capture_dir == tmp_path / "shared" / "cap"
    assert config.capture_dir_for_triton == "/capture"


def test_the_controller_writes_camera_models_with_capture_on_and_the_golden_model_without(tmp_path: Path) -> None:
    config = parse_config({"cameras": CAMERAS, "window_seconds": 10, "data": {"dir": str(tmp_path / "d")}})
    deployment = Deployment(config)
    spec = deployment.model_spec("cam1")
    assert (spec.capture_dir, spec.capture_rate) == (str(config.capture_dir), 0.5)
    assert spec.capture_budget_bytes == config.capture_budget_bytes and spec.capture_chunk_seconds == 1.0
    assert '"capture_dir"' in render_config(spec)
    assert deployment.model_spec(GOLDEN_MODEL).capture_dir is None
