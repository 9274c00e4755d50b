"""`ekya camera` as a remote camera: a real embedded tritonserver and the controller's real directive
endpoint, both reached by URL only, from a working directory of its own and a config whose data
directory the camera never touches. Triton serves the camera's model with a tiny python-backend model
that logs the request id of every request it serves, so the ids are checked where they arrive."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from camera.cli import main
from controller.runtime.cameras import DirectiveChannel
from controller.runtime.directives_http import DirectivesServer
from controller.triton.server import TritonServer, free_port_settings
from tests.triton_helpers import ADMIN_KEY, INPUT_DIMS

CLASSES = 6
WINDOW_S = 3.0  # slack for a busy CI box: window 0 opens a second after the directive

ID_LOGGER = textwrap.dedent('''
    import json
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def initialize(self, args):
            config = json.loads(args["model_config"])
            self.log = config["parameters"]["request_log"]["string_value"]
            self.classes = int(config["output"][0]["dims"][0])

        def execute(self, requests):
            replies = []
            with open(self.log, "a") as log:
                for request in requests:
                    batch = pb_utils.get_input_tensor_by_name(request, "input").as_numpy()
                    log.write(request.request_id() + "\\n")
                    logits = np.zeros((batch.shape[0], self.classes), np.float32)
                    replies.append(pb_utils.InferenceResponse([pb_utils.Tensor("logits", logits)]))
            return replies
''')


def id_logging_model(repository: Path, log: Path) -> None:
    """Model `cam`: answers zeros, and appends each request's id to `log`."""
    (repository / "cam" / "1").mkdir(parents=True)
    (repository / "cam" / "1" / "model.py").write_text(ID_LOGGER)
    dims = ", ".join(map(str, INPUT_DIMS))
    (repository / "cam" / "config.pbtxt").write_text(textwrap.dedent(f'''
        name: "cam"
        backend: "python"
        max_batch_size: 8
        input [ {{ name: "input", data_type: TYPE_FP32, dims: [ {dims} ] }} ]
        output [ {{ name: "logits", data_type: TYPE_FP32, dims: [ {CLASSES} ] }} ]
        instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
        parameters {{ key: "request_log", value: {{ string_value: "{log}" }} }}
    '''))


@pytest.mark.slow
def test_a_remote_camera_needs_only_the_two_urls(tmp_path: Path, triton_runtime, monkeypatch, capsys) -> None:
    controller_dir, camera_cwd = tmp_path / "controller", tmp_path / "camera"
    camera_cwd.mkdir()
    config = controller_dir / "deployment.yaml"
    controller_dir.mkdir()
    # Free ports chosen at start (0): the config cannot say where the endpoints are, the flags do.
    config.write_text(yaml.safe_dump({
        "cameras": [{"name": "cam", "source": {"kind": "synthetic", "seed": 3, "fps": 4, "objects_per_frame": 2}}],
        "edge_model": {"input_size": INPUT_DIMS[-1]}, "window_seconds": WINDOW_S, "data": {"dir": "data"},
        "triton": {"mode": "embedded", "grpc_port": 0}, "directives": {"port": 0}}))
    request_log = tmp_path / "requests.log"
    id_logging_model(tmp_path / "repo", request_log)
    server = TritonServer(tmp_path / "repo", tmp_path / "triton", admin_key=ADMIN_KEY, runtime=triton_runtime,
                          load_models=["cam"], **free_port_settings())
    info = server.start()
    channel = DirectiveChannel(serving_version=lambda camera: 1)
    channel.publish("cam", t0=time.time() + 1.0, window_seconds=WINDOW_S, stride=1.0, window=0, stop_after_window=0)
    directives = DirectivesServer(channel, ["cam"], window_seconds=WINDOW_S).start(0)
    monkeypatch.chdir(camera_cwd)
    try:
        code = main(["--config", str(config), "--name", "cam", "--triton-url", info.grpc_url,
                     "--controller-url", directives.url, "--wait-seconds", "30"])
    finally:
        directives.close()
        server.stop()
    assert code == 0, capsys.readouterr().err
    # everything it wrote is in its own results directory (the default, under its working directory)
    results = camera_cwd / "ekya-camera-results" / "cam"
    assert sorted(str(p.relative_to(camera_cwd)) for p in camera_cwd.rglob("*")) == [
        "ekya-camera-results", "ekya-camera-results/cam", "ekya-camera-results/cam/live.json",
        "ekya-camera-results/cam/w000000.json"]
    assert sorted(p.name for p in controller_dir.iterdir()) == ["deployment.yaml"]  # no data directory made
    result = json.loads((results / "w000000.json").read_text())
    assert result["requests"] > 0 and result["failed_requests"] == 0
    assert result["accuracy"] is not None and result["model_versions"] == {"1": result["requests"]}
    # every request carried its id, <camera>/w<window>/f<frame>, and Triton got them
    received = request_log.read_text().split()
    assert len(received) == len(set(received)) == result["requests"]
    # (a frame without objects sends no request)
    assert set(received) <= {f"cam/w0/f{k}" for k in range(result["frames"])}, received
    assert f"results: {Path('ekya-camera-results') / 'cam'}" in capsys.readouterr().out
