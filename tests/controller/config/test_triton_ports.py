"""The embedded Triton's ports are configuration: Triton's standard ones by default, never random."""

from __future__ import annotations

import pytest

from controller.config import ConfigError, parse_config

CAMERAS = [{"name": "a", "source": {"kind": "synthetic"}}]


def test_embedded_ports_default_to_tritons_standard_ones() -> None:
    triton = parse_config({"cameras": CAMERAS}).triton
    assert (triton.grpc_port, triton.http_port, triton.metrics_port) == (8001, 8000, 8002)


def test_configured_ports_are_kept_and_must_differ() -> None:
    ports = {"grpc_port": 18001, "http_port": 18000, "metrics_port": 18002}
    triton = parse_config({"cameras": CAMERAS, "triton": {"mode": "embedded", **ports}}).triton
    assert (triton.grpc_port, triton.http_port, triton.metrics_port) == (18001, 18000, 18002)
    with pytest.raises(ConfigError, match="must differ"):
        parse_config({"cameras": CAMERAS, "triton": {"mode": "embedded", **ports, "metrics_port": 18001}})
