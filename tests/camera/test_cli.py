"""`ekya camera`'s endpoints: taken from the flags, else from the config; a clear error (exit 2) when
neither says where Triton or the directive endpoint is, or a URL has the wrong shape. Nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from camera.cli import main

FREE_PORTS = "triton: {mode: embedded, grpc_port: 0}\ndirectives: {port: 0}\n"  # chosen at start: unknown here


def config(tmp_path: Path, sections: str = FREE_PORTS) -> str:
    path = tmp_path / "deployment.yaml"
    path.write_text("cameras: [{name: cam, source: {kind: synthetic}}]\n" + sections)
    return str(path)


@pytest.mark.parametrize(("flags", "message"), [
    ([], "no Triton URL: pass --triton-url HOST:PORT"),
    (["--triton-url", "127.0.0.1:8001"], "no controller URL: pass --controller-url http://HOST:PORT"),
    (["--controller-url", "http://127.0.0.1:9401"], "no Triton URL: pass --triton-url HOST:PORT"),
    (["--triton-url", "grpc://triton:8001", "--controller-url", "http://c:1"], "expected the gRPC endpoint as host:port"),
    (["--triton-url", "triton", "--controller-url", "http://c:1"], "expected the gRPC endpoint as host:port"),
    (["--triton-url", "triton:80x", "--controller-url", "http://c:1"], "expected the gRPC endpoint as host:port"),
    (["--triton-url", "triton:8001", "--controller-url", "c:9401"], "--controller-url: expected http://host:port"),
])
def test_missing_or_malformed_urls_are_clear_errors(tmp_path: Path, monkeypatch, capsys, flags: list[str],
                                                    message: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--config", config(tmp_path), "--name", "cam", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ekya-camera-results").exists()  # refused before it wrote anything


def test_the_disabled_endpoint_is_named_in_the_error(tmp_path: Path, capsys) -> None:
    path = config(tmp_path, "directives: {enabled: false}\n")
    assert main(["--config", path, "--name", "cam", "--results", str(tmp_path / "r")]) == 2
    assert "`directives` endpoint is disabled or on port 0" in capsys.readouterr().err
