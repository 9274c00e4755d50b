"""End to end with the user's own models on CPU: the golden model is an ONNX file the test trains and
exports itself (its own tensor names, input size and normalisation, classes mapped many-to-one onto the
deployment's, one left unmapped), and the initial edge model is a state dict file: nothing is bootstrapped.
One video camera (`ekya camera`): a real H.264 MP4 the test encodes, played in real time, objects found by
the user's ONNX detector (one the test builds: it knows the scene's background), which the controller
serves on the same Triton and the camera calls over gRPC; two short windows through the embedded Triton.

Asserts: the detector was served and answered every frame, samples were captured where they were served, the window's training data carries exactly the
labels that golden model gives its crops (computed here with onnxruntime and the class map), and a model
retrained on them was published.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from controller.config import load_config
from controller.labelling import GoldenInput
from controller.layout import DataLayout
from controller.service import run_controller
from controller.state import ControllerState
from controller.triton.server import free_port
from protocol.camera_results import CameraResults
from tests.triton_helpers import embedded_triton_section

WINDOW_S = 15
SIZE = 32
GOLDEN_CLASSES = ["pedestrian", "auto", "lorry", "coach", "cycle", "motorbike"]
CLASS_MAP = {"pedestrian": "person", "auto": "car", "lorry": "truck", "coach": "truck", "cycle": "bicycle"}
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
DETECTOR_SIZE = 128
VIDEO = {"kind": "video", "url": "scene.mp4", "fps": 8, "loop": True,
         "detector": {"kind": "onnx", "model": "detector.onnx", "input_size": DETECTOR_SIZE}}


class TinyGolden(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(32, len(GOLDEN_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


def _golden_onnx(path: Path) -> Path:
    """A small golden model trained on synthetic objects like the video's (their ground truth), normalising
    as MEAN/STD say."""
    from trainer.streams.synthetic import CameraStreamSpec, generate_window

    data = generate_window(CameraStreamSpec(name="golden", seed=5, crop_size=SIZE, fps=8, window_seconds=WINDOW_S,
                                            objects_per_frame=5), -1, max_crops=600)
    x = torch.from_numpy(((data.images / 255.0 - np.array(MEAN)) / np.array(STD)).transpose(0, 3, 1, 2)).float()
    y = torch.from_numpy(data.labels)  # the synthetic classes in the order of GOLDEN_CLASSES' meanings
    torch.manual_seed(0)
    net = TinyGolden()
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(60):
        optimiser.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimiser.step()
    torch.onnx.export(net.eval(), (x[:2],), str(path), input_names=["image"], output_names=["class_scores"],
                      dynamic_axes={"image": {0: "n"}, "class_scores": {0: "n"}}, dynamo=False)
    return path


@pytest.mark.slow
def test_user_golden_and_edge_models_end_to_end(tmp_path: Path):
    from tests.sources.detector_helpers import lane_bands, lane_detector_onnx, letterboxed_background
    from tests.sources.video_helpers import scene_video
    from trainer.models import build_model
    from trainer.streams.scene import SceneSpec

    # 320x240, three objects crossing, 6 s looped: the detector's crops are what the golden model labels
    scene = SceneSpec(fps=8, seconds=6, objects=3, object_size=40, seed=3)
    frames = scene_video(tmp_path / "scene.mp4", scene)
    background = letterboxed_background([f.image for f in frames], DETECTOR_SIZE)
    lane_detector_onnx(tmp_path / "detector.onnx", background, lane_bands(scene.width, scene.height, 3, DETECTOR_SIZE))
    torch.save(build_model("resnet18", 64, SIZE, seed=7).state_dict(), tmp_path / "edge.pt")
    raw = {
        "cameras": [{"name": "cam0", "source": VIDEO}],
        "edge_model": {"family": "resnet18", "input_size": SIZE, "hidden": 64, "weights": "edge.pt"},
        "golden_model": {"onnx": "golden.onnx", "input_size": SIZE, "mean": list(MEAN), "std": list(STD),
                         "classes": GOLDEN_CLASSES, "class_map": CLASS_MAP},
        "window_seconds": WINDOW_S,
        "resources": {"mode": "cpu", "cores": 2},
        "retraining_configs": [{"layers": "all", "hidden": 64, "subsample": 1.0, "epochs": 3, "lr": 0.05}],
        # profiled (and a better trial model served) during a window, on its frames labelled so far
        "microprofiler": {"subsample": 1.0, "epochs": 2, "budget_fraction": 0.3, "ahead_seconds": 5,
                          "ahead_every_seconds": 4},
        "label_sampling_rate": 1.0,
        "metrics": {"enabled": False},
        "data": {"dir": "data"},
        "triton": embedded_triton_section(),
        "directives": {"port": free_port()},
    }
    config_path = tmp_path / "deployment.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    golden = _golden_onnx(tmp_path / "golden.onnx")
    layout = DataLayout(Path(config.data.dir))
    camera: list[subprocess.Popen] = []

    def on_started(_controller) -> None:
        camera.append(subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "camera", "--config", str(config_path), "--name", "cam0",
             "--windows", "2", "--triton-url", f"127.0.0.1:{config.triton.grpc_port}",
             "--controller-url", f"http://127.0.0.1:{config.directives.port}",
             "--results", str(tmp_path / "results")], stdout=open(tmp_path / "cam0.log", "wb"),
            stderr=subprocess.STDOUT))

    try:
        run_controller(config, max_windows=2, on_started=on_started, bootstrap_progress=False)
    finally:
        for process in camera:
            process.kill()
        subprocess.run(["pkill", "-f", str(tmp_path / "data" / "triton")], check=False)

    assert not (tmp_path / "data" / "models" / "manifest.json").exists(), "nothing is bootstrapped"
    # the detector was served as cam0.detector and answered every frame the camera read
    served = config.model_repository / "cam0.detector" / "1" / "model.onnx"
    assert served.read_bytes() == (tmp_path / "detector.onnx").read_bytes()
    window0 = CameraResults(tmp_path / "results").read_window(0)
    assert window0 is not None, (tmp_path / "cam0.log").read_text()[-3000:]
    assert window0["source"]["frames"] > 50 and window0["source"]["detector_errors"] == 0, window0["source"]
    state = ControllerState.load(layout.state_file)
    assert state is not None and state.closed == 1
    record = state.cameras["cam0"]
    assert record.captured > 20, record  # sampled server-side where it was served

    # window 0's crops carry the labels the user's golden model gives them, mapped onto the deployment's
    import onnxruntime as ort

    train = np.load(layout.window_dir(0, "cam0") / "train.npz")
    images, labels = train["images"], train["labels"]
    mapping = config.golden_model.deployment_map(config.classes)
    prepare = GoldenInput(SIZE, MEAN, STD, "nchw", tuple(mapping)).prepare
    session = ort.InferenceSession(str(golden), providers=["CPUExecutionProvider"])
    expected = np.asarray(mapping)[session.run(None, {"image": prepare(images)})[0].argmax(1)]
    assert len(labels) > 20 and np.array_equal(labels, expected)
    assert set(labels) <= {config.classes.index(c) for c in CLASS_MAP.values()} | {-1}

    # ...and a model retrained on golden labels beat the user's initial model and was published
    published = [p for r in state.history for c in r.cameras.values() for p in (c.retrained, c.trial, c.ahead_trial)
                 if p is not None and p.version is not None]
    assert published and record.serving_version > 1, [(r.cameras, r.events) for r in state.history]
    assert all(p.accuracy > p.replaced_accuracy for p in published), published
