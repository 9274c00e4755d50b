"""network.expose, the camera models' bounded queue and where Triton's metrics are read: from the config."""

from __future__ import annotations

from pathlib import Path

from controller.config import parse_config
from controller.labelling import GOLDEN_MODEL
from controller.runtime.deployment import Deployment
from controller.triton.spec import render_config

CAMERAS = [{"name": "a", "source": {"kind": "synthetic"}}]


def test_everything_on_loopback_unless_exposed() -> None:
    config = parse_config({"cameras": CAMERAS})
    assert config.network.expose is False
    assert (config.triton_bind_address, config.directives_bind_address, config.metrics.address) == (
        "127.0.0.1", "127.0.0.1", "127.0.0.1")
    exposed = parse_config({"cameras": CAMERAS, "network": {"expose": True}})
    assert (exposed.triton_bind_address, exposed.directives_bind_address) == ("0.0.0.0", "0.0.0.0")
    assert exposed.metrics.address == "127.0.0.1"  # the controller's /metrics follows metrics.address
    assert exposed.triton.address == "127.0.0.1"  # where the controller connects, and Triton's metrics port


def test_where_tritons_metrics_are_read() -> None:
    embedded = parse_config({"cameras": CAMERAS, "triton": {"mode": "embedded", "metrics_port": 18002}})
    assert embedded.triton_metrics_url == "http://127.0.0.1:18002/metrics"
    external = {"mode": "external", "url": "triton:8001", "metrics_url": "http://triton:8002/metrics"}
    assert parse_config({"cameras": CAMERAS, "triton": external}).triton_metrics_url == "http://triton:8002/metrics"
    external.pop("metrics_url")
    assert parse_config({"cameras": CAMERAS, "triton": external}).triton_metrics_url is None
    assert parse_config({"cameras": CAMERAS, "network": {"expose": True}, "triton": external}).triton_bind_address is None


def test_camera_models_get_the_configured_bounded_queue_and_the_golden_model_none(tmp_path: Path) -> None:
    config = parse_config({"cameras": CAMERAS, "data": {"dir": str(tmp_path)},
                           "inference": {"max_queue_size": 32, "queue_timeout_ms": 250}})
    deployment = Deployment(config)
    camera = deployment.model_spec("a")
    assert (camera.max_queue_size, camera.queue_timeout_us) == (32, 250_000)
    assert "max_queue_size: 32" in render_config(camera) and "timeout_action: REJECT" in render_config(camera)
    golden = deployment.model_spec(GOLDEN_MODEL)
    assert (golden.max_queue_size, golden.queue_timeout_us) == (0, 0)
    defaults = parse_config({"cameras": CAMERAS}).inference
    assert (defaults.max_queue_size, defaults.queue_timeout_ms) == (256, 2000)
