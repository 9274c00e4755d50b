"""docker/compose.yaml, run natively: the processes its services describe, with their command lines as
written, their volumes and secrets mapped to temporary directories, their service:port addresses to free
loopback ports, and the same split (the camera processes get the config file and the two network
endpoints, nothing of the controller's data). Two windows end to end.

What differs from the containers, and why:
- `tritonserver` on PATH is the embedded server's binary (nvidia-pytriton) behind a shim that adds what
  NVIDIA's image has built in (its backend directory) and keeps its ports on loopback. The embedded server
  has no onnxruntime backend, so the deployment config's `triton.backend` becomes our `ekya_onnx`, with
  the container's repository shape kept (`capture_via: wrapper`: each camera's public model is the Python
  capture wrapper in front of `<camera>.onnx`, as with the native onnxruntime backend).
- The deployment config is compose's own, with what a 2-core CI box without a GPU needs instead of the
  GPU server's settings: CPU resources, small models, short windows, a small bootstrap.
- `volumes-init` (a chown for the containers' uid) has nothing to do: the test's user owns the directories.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import load_config
from controller.layout import DataLayout
from controller.state import ControllerState
from controller.triton.runtime import prepare_runtime
from controller.triton.server import free_port
from protocol.camera_results import CameraResults
from tests.repo import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
WINDOW_S = 15
# A 2-core CPU box's settings in place of the GPU server's (the rest of the config is compose's).
CPU_OVERRIDES: dict[str, Any] = {
    "edge_model": {"family": "resnet18", "input_size": 32, "hidden": 64},
    "golden_model": {"family": "resnet34", "input_size": 32, "hidden": 256},
    "window_seconds": WINDOW_S,
    "resources": {"mode": "cpu", "cores": 2},
    "retraining_configs": [{"layers": "all", "hidden": 64, "subsample": 1.0, "epochs": 3},
                           {"layers": "head", "hidden": 64, "subsample": 1.0, "epochs": 3}],
    "microprofiler": {"subsample": 0.5, "epochs": 1, "budget_fraction": 0.2},
    "bootstrap": {"edge_crops": 200, "edge_epochs": 1, "golden_crops": 400, "golden_epochs": 2},
    "inference": {"max_batch_size": 32, "max_instances": 2},
    "label_sampling_rate": 0.8,
}
CAMERA_SOURCE = {"fps": 4, "objects_per_frame": 4}  # each synthetic camera's rate, lowered for the CPU


def compose_command(service: dict[str, Any]) -> list[str]:
    """The service's process: entrypoint + command, with compose's `$$` escapes undone."""
    entrypoint = service.get("entrypoint") or ["ekya"]  # the image's ENTRYPOINT
    return [part.replace("$$", "$") for part in [*entrypoint, *service["command"]]]


class NativeHost:
    """Where each container path and service:port of the compose file lives on this machine."""

    def __init__(self, compose: dict[str, Any], root: Path) -> None:
        self.root = root
        self.paths: dict[str, Path] = {}
        for name in compose.get("volumes", {}):
            self.paths.update({target: root / "volumes" / name for service in compose["services"].values()
                               for source, target in self._mounts(service) if source == name})
        for name in compose.get("secrets", {}):
            self.paths[f"/run/secrets/{name}"] = root / "secrets" / name
        self.paths["/etc/ekya/deployment.yaml"] = root / "deployment.yaml"
        self.ports: dict[tuple[str, int], int] = {}

    @staticmethod
    def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
        return [tuple(spec.split(":")[:2]) for spec in service.get("volumes", [])]  # type: ignore[misc]

    def port(self, service: str, port: int) -> int:
        return self.ports.setdefault((service, port), free_port())

    def rewrite(self, text: str, service: str | None = None) -> str:
        for target, path in sorted(self.paths.items(), key=lambda item: -len(item[0])):
            text = text.replace(target, str(path))
        text = re.sub(r"\b(triton|controller):(\d+)\b",
                      lambda m: f"127.0.0.1:{self.port(m.group(1), int(m.group(2)))}", text)
        if service is not None:  # the service's own listening ports
            text = re.sub(r"(--[a-z]+-port=)(\d+)", lambda m: m.group(1) + str(self.port(service, int(m.group(2)))),
                          text)
        return text


def tritonserver_shim(directory: Path, runtime_dir: Path) -> dict[str, str]:
    """`tritonserver` on PATH: the embedded binary with the backend directory NVIDIA's image has built in,
    on loopback. Returns the environment to run compose's Triton command in."""
    runtime = prepare_runtime(runtime_dir)
    directory.mkdir(parents=True)
    shim = directory / "tritonserver"
    shim.write_text("#!/bin/sh\n" + shlex.join([
        "exec", str(runtime.binary)]) + ' "$@" ' + shlex.join([
        f"--backend-directory={runtime.backend_dir}", f"--cache-directory={runtime.cache_dir}",
        f"--backend-config=python,shm-region-prefix-name=ekyacompose{os.getpid()}",
        "--grpc-address=127.0.0.1", "--http-address=127.0.0.1", "--metrics-address=127.0.0.1"]) + "\n")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = runtime.environment()
    env["PATH"] = f"{directory}{os.pathsep}{env['PATH']}"
    return env


def native_config(host: NativeHost, compose_config: Path) -> dict[str, Any]:
    raw = yaml.safe_load(host.rewrite(compose_config.read_text()))
    raw.update(CPU_OVERRIDES)
    raw["triton"].update(backend="ekya_onnx", capture_via="wrapper")
    for camera in raw["cameras"]:
        camera["source"].update(CAMERA_SOURCE)
    raw["metrics"]["port"] = host.port("controller", raw["metrics"]["port"])
    raw["directives"]["port"] = host.port("controller", raw["directives"]["port"])
    return raw


def wait_until(predicate, timeout_s: float, what: str, processes: dict[str, subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        for name, process in processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode} while waiting for {what}")
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@pytest.mark.slow
def test_the_compose_services_run_natively_for_two_windows(tmp_path: Path) -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    host = NativeHost(compose, tmp_path)
    for path in host.paths.values():
        if path.parent.name == "volumes":
            path.mkdir(parents=True)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "triton_admin_key").write_text("compose-native-test-key\n")
    config_mount = next(s for s, t in NativeHost._mounts(services["controller"]) if t == "/etc/ekya/deployment.yaml")
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump(native_config(host, DOCKER / config_mount)))
    config = load_config(tmp_path / "deployment.yaml")
    cameras = {name: svc for name, svc in services.items() if name.startswith("camera-")}

    logs = tmp_path / "logs"
    logs.mkdir()
    processes: dict[str, subprocess.Popen] = {}

    def start(name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        processes[name] = subprocess.Popen(argv, env=env, cwd=cwd or tmp_path, stdout=open(logs / f"{name}.log", "wb"),
                                           stderr=subprocess.STDOUT, start_new_session=True)

    try:
        # triton: compose's shell command line as written (the key read from the secret file)
        env = tritonserver_shim(tmp_path / "bin", tmp_path / "triton-runtime")
        start("triton", [host.rewrite(part, "triton") for part in compose_command(services["triton"])], env)
        ready = f"http://127.0.0.1:{host.port('triton', 8000)}/v2/health/live"
        wait_until(lambda: _answers(ready), 90, "Triton to answer", processes)

        # controller: `ekya run --config /etc/ekya/deployment.yaml`
        controller_argv = [host.rewrite(part) for part in compose_command(services["controller"])]
        assert controller_argv[0] == "ekya"
        start("controller", [sys.executable, "-m", "controller.cli", *controller_argv[1:]])

        # cameras: their own empty working directories, the config file and the two endpoints only
        for name, service in cameras.items():
            argv = [host.rewrite(part) for part in compose_command(service)]
            argv = [str(tmp_path / name / "results") if a == "/home/ekya/results" else a for a in argv]
            (tmp_path / name).mkdir()
            start(name, [sys.executable, "-m", "controller.cli", *argv[1:]], cwd=tmp_path / name)

        layout = DataLayout(Path(config.data.dir))

        def two_windows_closed() -> bool:
            state = ControllerState.load(layout.state_file) if layout.state_file.exists() else None
            return state is not None and state.closed >= 1

        wait_until(two_windows_closed, 600, "two windows to close", processes)
        metrics = {job["job_name"]: host.rewrite(job["static_configs"][0]["targets"][0])
                   for job in yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]}
        scraped = {job: _get(f"http://{target}/metrics") for job, target in metrics.items()}

        processes["controller"].send_signal(signal.SIGTERM)  # `docker compose stop`
        assert processes["controller"].wait(timeout=90) == 0
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)

    state = ControllerState.load(layout.state_file)
    assert state is not None and state.closed >= 1
    for name in config.camera_names:
        record = state.cameras[name]
        assert record.captured > 0, (name, record)  # sampled by the capture wrapper inside Triton
    assert any(record.serving_version > 1 for record in state.cameras.values()), "nothing retrained and swapped"

    # the container's repository shape: the public name is the capture wrapper, the ONNX versions behind it
    repository = Path(config.model_repository)
    for name in config.camera_names:
        assert 'backend: "python"' in (repository / name / "config.pbtxt").read_text()
        inner = repository / f"{name}.onnx"
        assert 'backend: "ekya_onnx"' in (inner / "config.pbtxt").read_text()
        assert any((inner / v / "model.onnx").exists() for v in os.listdir(inner) if v.isdigit())

    # every camera process served its windows with no failed request, writing only into its own directory
    for name, service in cameras.items():
        camera = service["command"][service["command"].index("--name") + 1]
        results = CameraResults(tmp_path / name / "results")
        windows = [results.read_window(w) for w in range(2)]
        served = [w for w in windows if w is not None]
        assert served, f"{name} wrote no window result"
        assert sum(w["requests"] for w in served) > 0 and sum(w["failed_requests"] for w in served) == 0, served
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["results"], name
        assert f'camera="{camera}"' in scraped["ekya-controller"]

    # Prometheus' targets (docker/prometheus/prometheus.yml) are these processes' metrics endpoints
    assert "ekya_capture_samples_total" in scraped["ekya-controller"]
    assert "nv_inference_request_success" in scraped["triton"]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_native_host_maps_paths_and_service_addresses(tmp_path: Path) -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    host = NativeHost(compose, tmp_path)
    assert host.paths["/models"] == tmp_path / "volumes" / "models"
    assert host.paths["/capture"] == tmp_path / "volumes" / "capture"
    text = host.rewrite("--model-repository=/models --grpc-port=8001 url: triton:8001 http://controller:9401",
                        "triton")
    grpc = host.port("triton", 8001)
    assert text == (f"--model-repository={tmp_path}/volumes/models --grpc-port={grpc} url: 127.0.0.1:{grpc} "
                    f"http://127.0.0.1:{host.port('controller', 9401)}")
    assert json.dumps(compose_command(compose["services"]["triton"])).count("$$") == 0
