"""The camera's own reading of the deployment config: only its keys, the controller's defaults, paths
resolved like the controller does, and errors that name the file and the key."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from camera.settings import CameraSettingsError, load_camera_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "deployment.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_defaults_agree_with_the_controllers_config(tmp_path: Path) -> None:
    from controller.config import load_config

    path = write(tmp_path, """
        cameras:
          - {name: a, source: {kind: synthetic, seed: 2}}
          - {name: b, source: {kind: folder, manifest: ../frames/m.csv}}
        scheduler: {name: fair}       # not a camera's business: not read
        """)
    config = load_config(path)
    for name in ("a", "b"):
        camera = load_camera_settings(path, name)
        assert camera.source == config.camera(name).source  # the same model, paths resolved alike
        assert camera.request_timeout_s == config.inference.request_timeout_s
        assert camera.window_seconds == config.window_seconds
        assert camera.context.crop_size == config.edge_model.input_size
        assert camera.context.history_windows == config.bootstrap.history_windows
        assert camera.triton_mode == "embedded"
        assert camera.triton_url == f"{config.triton.address}:{config.triton.grpc_port}" == "127.0.0.1:8001"
        assert camera.controller_url == f"http://{config.directives.address}:{config.directives.port}"
        assert not hasattr(camera, "data_dir")  # the camera never learns where the controller's data is


def test_reads_what_the_camera_needs(tmp_path: Path) -> None:
    path = write(tmp_path, """
        cameras: [{name: a, source: {kind: synthetic, fps: 5}}]
        window_seconds: 30
        label_sampling_rate: 0.5
        data: {dir: /var/ekya, disk_budget_mb: 100}
        inference: {request_timeout_s: 2, max_batch_size: 8}
        triton: {mode: external, url: 'triton:8001', admin_key_env: KEY}
        edge_model: {input_size: 32}
        """)
    camera = load_camera_settings(path, "a")
    assert (camera.window_seconds, camera.request_timeout_s) == (30, 2)
    assert (camera.triton_mode, camera.triton_url) == ("external", "triton:8001")
    assert camera.controller_url == "http://127.0.0.1:9401"
    assert camera.context.crop_size == 32 and camera.source.fps == 5


@pytest.mark.parametrize(("text", "message"), [
    ("cameras: [{name: b, source: {kind: synthetic}}]\n", "cameras: no camera named 'a'; cameras: b"),
    ("cameras: [{name: a, source: {kind: synthetic, fps: 0}}]\n",
     "cameras[0].source.fps: Input should be greater than 0"),
    ("cameras: [{name: a, source: {kind: webcam}}]\n",
     "cameras[0].source.kind: unknown source kind 'webcam'; registered kinds: synthetic, folder, video"),
    ("cameras: [{name: a, source: {kind: synthetic}}]\nwindow_seconds: soon\n",
     "window_seconds: expected a number; got 'soon'"),
    ("cameras: [{name: a, source: {kind: synthetic}}]\ntriton: {mode: external}\n",
     "triton.url: an external Triton needs its gRPC host:port"),
    ("cameras: [{name: a, source: {kind: synthetic}}]\nedge_model: {input_size: 8}\n",
     "edge_model.input_size: expected a number in [16, 512]; got 8"),
])
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CameraSettingsError) as error:
        load_camera_settings(path, "a")
    assert str(error.value).startswith(f"{path}: {message}")


def test_ekya_camera_reports_a_bad_config_and_runs_as_its_own_script(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras: [{name: b, source: {kind: synthetic}}]\n")
    for command in (["controller.cli", "camera"], ["camera.cli"]):
        result = subprocess.run([sys.executable, "-m", *command, "--config", str(path), "--name", "a"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "no camera named 'a'" in result.stderr, result.stderr


@pytest.mark.parametrize(("sections", "triton_url", "controller_url"), [
    ("triton: {mode: embedded, address: 0.0.0.0, grpc_port: 9001}\ndirectives: {address: 10.0.0.5, port: 9500}\n",
     "127.0.0.1:9001", "http://10.0.0.5:9500"),  # exposed on every interface: this host's loopback reaches it
    ("triton: {mode: embedded, address: '::1', grpc_port: 9001}\n", "[::1]:9001", "http://127.0.0.1:9401"),
    ("triton: {mode: embedded, grpc_port: 0}\ndirectives: {port: 0}\n", None, None),  # free ports: unknown
    ("directives: {enabled: false}\n", "127.0.0.1:8001", None),
])
def test_the_endpoints_the_config_names(tmp_path: Path, sections: str, triton_url: str | None,
                                        controller_url: str | None) -> None:
    camera = load_camera_settings(write(tmp_path, "cameras: [{name: a, source: {kind: synthetic}}]\n" + sections), "a")
    assert (camera.triton_url, camera.controller_url) == (triton_url, controller_url)
