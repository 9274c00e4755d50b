"""The README's "Bring your own client" code runs as printed: against a real Triton serving the camera's
model and the controller's real directive endpoint, in a fresh interpreter that imports nothing of ekya.
Only its two placeholders (your detector, your video) and its three endpoints are filled in."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from controller.runtime.cameras import DirectiveChannel
from controller.runtime.directives_http import DirectivesServer
from controller.triton.spec import ModelSpec
from tests.repo import REPO_ROOT
from tests.triton_helpers import export_tiny, running_server

FRAMES = 7
STRIDE = 2.0  # the client must infer frames 0, 2, 4, 6 only


def readme_client() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Bring your own client"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the README's 'Bring your own client' section"
    return match.group(1)


def test_the_readme_client_follows_the_stride_and_gets_answers(tmp_path: Path, triton_runtime) -> None:
    code = readme_client()
    assert "import tritonclient" in code and "ekya" not in code
    size = int(re.search(r"\[N, (\d+), \1, 3\]", code).group(1))  # the crop size the snippet promises
    onnx = export_tiny(tmp_path / "m.onnx", seed=3, dims=(3, size, size))[0]
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (server, _, serving):
        camera = re.search(r'CAMERA, TRITON, CONTROLLER = "([^"]+)"', code).group(1)
        serving.deploy(ModelSpec(name=camera, input_dims=(3, size, size)), onnx)
        channel = DirectiveChannel()
        directives = DirectivesServer(channel, [camera], window_seconds=60).start(0)
        try:
            channel.publish(camera, t0=0.0, window_seconds=60.0, stride=STRIDE, window=0, stop_after_window=None)
            filled = re.sub(r'CAMERA, TRITON, CONTROLLER = .*',
                            f'CAMERA, TRITON, CONTROLLER = "{camera}", "{server.info.grpc_url}", "{directives.url}"',
                            code)
            placeholders = (f"def my_video():\n    return range({FRAMES})\n\n"
                            f"def my_detector(frames):\n    for _ in frames:\n"
                            f"        yield np.full((2, {size}, {size}, 3), 100, np.uint8)\n\n")
            first_use = filled.index("triton = ")
            script = filled[:first_use] + placeholders + filled[first_use:] + (
                "\nimport sys\nprint(json.dumps({'classes': classes.tolist(), 'version': int(version), "
                "'ekya': sorted(m for m in sys.modules if m.split('.')[0] in "
                "('controller', 'camera', 'protocol', 'trainer', 'sources', 'common'))}))\n")
            (tmp_path / "client.py").write_text(script)
            done = subprocess.run([sys.executable, "-I", "client.py"], cwd=tmp_path, capture_output=True, text=True,
                                  timeout=120)
            with urllib.request.urlopen(server.info.metrics_url, timeout=10) as reply:
                metrics = reply.read().decode()
        finally:
            directives.close()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["version"] == 1 and len(result["classes"]) == 2 and result["ekya"] == []
    served = re.search(rf'nv_inference_request_success{{model="{camera}",version="1"}} (\d+)', metrics)
    assert served and int(served.group(1)) == len(range(0, FRAMES, int(STRIDE)))  # frames 0, 2, 4, 6
