"""A user's golden model as an ONNX file: the test trains a tiny one itself (NHWC input, its own
normalisation, 4 classes), a real Triton serves it as given (its own tensor names and shapes), and the
controller's labelling path sends it crops resized and normalised as the config says and maps its classes
many-to-one onto the deployment's (an unmapped class labels nothing: -1). A golden model that does not fit
stops `ekya bootstrap` (and `ekya run`: the same check) with the file and the mismatch named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from controller.config import ConfigError, parse_config
from controller.labelling import GOLDEN_MODEL
from controller.runtime.deployment import Deployment
from controller.runtime.serving import TritonServing
from controller.user_models import UserModelError, check_user_models
from tests.triton_helpers import running_server

GOLDEN_CLASSES = ["sedan", "suv", "walker", "tree"]
COLOURS = {"sedan": (230, 20, 20), "suv": (120, 0, 0), "walker": (20, 20, 230), "tree": (20, 200, 20)}
CLASS_MAP = {"sedan": "car", "suv": "car", "walker": "person"}  # tree: not a deployment class
MEAN, STD, SIZE = (0.4, 0.3, 0.5), (0.2, 0.25, 0.3), 24  # the golden model's own, not ImageNet's


class GoldenNet(nn.Module):
    """Takes NHWC [B, 24, 24, 3] normalised pixels, as many users' exported models do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, len(GOLDEN_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x.permute(0, 3, 1, 2))).mean(dim=(2, 3)))


def _crops(n_each: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for index, colour in enumerate(COLOURS.values()):
        base = np.broadcast_to(np.array(colour, np.int16), (n_each, size, size, 3))
        images.append(np.clip(base + rng.integers(-25, 26, base.shape), 0, 255).astype(np.uint8))
        labels += [index] * n_each
    return np.concatenate(images), np.array(labels)


def train_golden(path: Path) -> Path:
    """A tiny golden model that tells the four colours apart, exported with a dynamic batch."""
    torch.manual_seed(0)
    images, labels = _crops(40, SIZE, seed=1)
    x = torch.from_numpy((images / 255.0 - np.array(MEAN)) / np.array(STD)).float()  # its own normalisation
    y = torch.from_numpy(labels)
    net = GoldenNet()
    optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(150):
        optimiser.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimiser.step()
    assert (net(x).argmax(1) == y).float().mean() == 1.0
    torch.onnx.export(net.eval(), (x[:2],), str(path), input_names=["pixels"], output_names=["scores"],
                      dynamic_axes={"pixels": {0: "n"}, "scores": {0: "n"}}, dynamo=False)
    return path


def golden_config(tmp_path: Path, onnx: Path, **golden) -> dict:
    return {"cameras": [{"name": "cam0", "source": {"kind": "synthetic", "seed": 1}}],
            "edge_model": {"input_size": 32},
            "golden_model": {"onnx": str(onnx), "input_size": SIZE, "mean": list(MEAN), "std": list(STD),
                             "input_layout": "nhwc", "classes": GOLDEN_CLASSES, "class_map": CLASS_MAP, **golden},
            "data": {"dir": str(tmp_path / "data")}}


@pytest.mark.slow
def test_user_golden_model_labels_through_triton_with_mapped_classes(tmp_path: Path, triton_runtime):
    onnx = train_golden(tmp_path / "golden.onnx")
    config = parse_config(golden_config(tmp_path, onnx))
    deployment = Deployment(config)
    deployment.user_models = check_user_models(config, tmp_path / "models")
    spec = deployment.model_spec(GOLDEN_MODEL)
    # served as given: the file's own tensor names, NHWC dims and four classes
    assert (spec.input_name, spec.input_dims, spec.output_name, spec.output_dims) == \
        ("pixels", (SIZE, SIZE, 3), "scores", (4,))
    crops, truth = _crops(6, 32, seed=2)  # the cameras' 32 px crops: resized to the golden model's 24
    deployment_classes = config.classes
    expected = np.array([deployment_classes.index(CLASS_MAP[c]) if c in CLASS_MAP else -1
                         for c in GOLDEN_CLASSES])[truth]
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (_, client, manager):
        manager.deploy(spec, onnx)
        serving = TritonServing(manager, client, golden=deployment.golden_input())
        labels = serving.golden_labels(crops)
    assert np.array_equal(labels, expected), (labels, expected)
    assert set(labels) == {deployment_classes.index("car"), deployment_classes.index("person"), -1}


def test_golden_input_resizes_normalises_and_lays_out():
    from controller.labelling import GoldenInput

    crop = np.full((1, 8, 8, 3), 255, np.uint8)
    nchw = GoldenInput(4, MEAN, STD, "nchw", (0,)).prepare(crop)
    nhwc = GoldenInput(4, MEAN, STD, "nhwc", (0,)).prepare(crop)
    assert nchw.shape == (1, 3, 4, 4) and nhwc.shape == (1, 4, 4, 3) and nchw.dtype == np.float32
    assert np.allclose(nchw[0, :, 0, 0], (1.0 - np.array(MEAN)) / np.array(STD))
    assert np.allclose(nhwc[0, 0, 0], nchw[0, :, 0, 0])
    assert GoldenInput(4, MEAN, STD, "nchw", (1, -1, 1)).labels(np.array([0, 1, 2])).tolist() == [1, -1, 1]


def _bootstrap(tmp_path: Path, config: dict, capsys) -> tuple[int, str]:
    from controller.cli import main

    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["bootstrap", "--config", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.slow
def test_golden_models_that_do_not_fit_are_refused_at_start_up(tmp_path: Path, capsys):
    onnx = train_golden(tmp_path / "golden.onnx")
    # a file that is not there, or not ONNX
    code, err = _bootstrap(tmp_path, golden_config(tmp_path, tmp_path / "gone.onnx"), capsys)
    assert code == 2 and f"golden_model.onnx {tmp_path / 'gone.onnx'}: file not found" in err
    (tmp_path / "text.onnx").write_text("hello")
    code, err = _bootstrap(tmp_path, golden_config(tmp_path, tmp_path / "text.onnx"), capsys)
    assert code == 2 and "text.onnx: not a readable ONNX model" in err
    # input shape against input_size and layout
    code, err = _bootstrap(tmp_path, golden_config(tmp_path, onnx, input_size=32), capsys)
    assert code == 2 and "golden.onnx: input 'pixels' has shape [?, 24, 24, 3]; the config's input_size 32 (NHWC) " \
                         "needs [batch, 32, 32, 3]" in err, err
    code, err = _bootstrap(tmp_path, golden_config(tmp_path, onnx, input_layout="nchw"), capsys)
    assert code == 2 and "needs [batch, 3, 24, 24]" in err, err
    # class count against golden_model.classes
    code, err = _bootstrap(tmp_path, golden_config(tmp_path, onnx, classes=GOLDEN_CLASSES[:3]), capsys)
    assert code == 2 and "golden.onnx: the model has 4 output classes, golden_model.classes lists 3" in err, err
    # the same check as `ekya run` makes before anything is served
    config = parse_config(golden_config(tmp_path, onnx, classes=[*GOLDEN_CLASSES, "sky"]))
    with pytest.raises(UserModelError, match="golden.onnx: the model has 4 output classes"):
        Deployment(config).start()
    assert not (tmp_path / "data" / "triton").exists()  # nothing was started
    # a class map naming classes nobody has: the config says where
    with pytest.raises(ConfigError, match=r"golden_model.class_map.boat: 'boat' is not one of golden_model.classes"):
        parse_config(golden_config(tmp_path, onnx, class_map={"boat": "car"}))
    with pytest.raises(ConfigError, match=r"golden_model.class_map.sedan: 'van' is not a deployment class"):
        parse_config(golden_config(tmp_path, onnx, class_map={"sedan": "van"}))


def test_a_detector_that_does_not_fit_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """A camera's ONNX detector is checked with the other model files: missing, or not an image model."""
    from onnx import TensorProto, helper, save

    def video_config(model: Path, camera: str = "gate") -> dict:
        return {"cameras": [{"name": camera, "source": {"kind": "video", "url": str(tmp_path / "a.mp4"),
                                                        "detector": {"kind": "onnx", "model": str(model),
                                                                     "input_size": 64}}}],
                "data": {"dir": str(tmp_path / "data")}}

    config = parse_config(video_config(tmp_path / "gone.onnx"))
    with pytest.raises(UserModelError, match=rf"cameras\[0\].source.detector.model {tmp_path / 'gone.onnx'}: file not found"):
        Deployment(config).start()
    assert not (tmp_path / "data" / "triton").exists()  # nothing was started
    flat = tmp_path / "flat.onnx"
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "flat",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(flat))
    with pytest.raises(UserModelError, match=r"flat.onnx: input 'x' has shape \[1, 64\]; an image detector .* "
                                             r"needs \[1, 3, 64, 64\]"):
        check_user_models(parse_config(video_config(flat)))
    # the detector is served as "<camera>.detector": no camera may be named so
    with pytest.raises(ConfigError, match="reserved for a camera's ONNX detector"):
        parse_config(video_config(flat, camera="gate.detector"))


def test_the_detector_is_served_as_given_on_the_camera_models_backend_without_capture(tmp_path: Path) -> None:
    """`<camera>.detector`'s config.pbtxt: the embedded server's ekya_onnx backend, or NVIDIA's native
    onnxruntime for a containerised Triton (whose camera models are wrapped for capture); never batched by
    Triton, never captured, never wrapped."""
    from controller.triton.spec import render_config
    from tests.sources.detector_helpers import lane_detector_onnx

    detector = lane_detector_onnx(tmp_path / "lanes.onnx", np.zeros((1, 3, 64, 64), np.float32), [(0, 32), (32, 64)])
    camera = {"name": "gate", "source": {"kind": "video", "url": str(tmp_path / "a.mp4"),
                                         "detector": {"kind": "onnx", "model": str(detector), "input_size": 64}}}
    for triton, backend in (({"mode": "embedded"}, "ekya_onnx"),
                            ({"mode": "external", "url": "triton:8001", "capture_dir": "/capture"}, "onnxruntime")):
        config = parse_config({"cameras": [camera], "data": {"dir": str(tmp_path / "data")}, "triton": triton})
        deployment = Deployment(config)
        deployment.user_models = check_user_models(config)  # what start() does first
        spec = deployment.detector_spec("gate")
        text = render_config(spec)
        assert spec.name == "gate.detector" and not spec.wrapped and spec.capture_dir is None
        assert f'backend: "{backend}"' in text and "max_batch_size: 0" in text
        assert "dims: [ 1, 3, 64, 64 ]" in text and "dims: [ 2, 6 ]" in text
        assert "dynamic_batching" not in text and "capture" not in text
