"""A user's initial edge model: from a torchvision state dict, our own state dict, or an ONNX file. Each loads
as our model, answers as the file does, retrains one step and exports to ONNX; files that do not fit are
refused with the file and the mismatch named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from trainer.configs import RetrainConfig
from trainer.export import export_onnx
from trainer.models import build_model, load_model, save_model
from trainer.streams.base import WindowData
from trainer.training import Trainer
from trainer.user_models import UserModelError, edge_from_onnx, edge_from_weights

CLASSES = ("car", "person", "bike")
SIZE = 32


def _crops(n: int = 12) -> WindowData:
    rng = np.random.default_rng(0)
    return WindowData(rng.integers(0, 255, (n, SIZE, SIZE, 3), dtype=np.uint8), rng.integers(0, 3, n),
                      np.arange(n), np.arange(n), np.arange(n, dtype=float), num_classes=3)


def _retrain_and_export(model, tmp_path: Path, layers: str = "last_block") -> None:
    """One training step changes the trained layers; the result saves, loads back and exports."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, _crops(), RetrainConfig(epochs=1, layers=layers, hidden=model.meta.hidden,
                                                       batch_size=12, lr=0.05))
    trainer.run_epoch()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("head.") for k in changed) and any(k.startswith("backbone.") for k in changed)
    back = load_model(save_model(model, tmp_path / "retrained.pt"))
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(back.eval()(x), model.eval()(x), atol=1e-5)
    result = export_onnx(back, tmp_path / "retrained.onnx")
    assert result.path.is_file() and result.max_abs_diff < 1e-3


@pytest.mark.slow
def test_torchvision_state_dict_with_its_fc_is_a_one_layer_head(tmp_path: Path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Linear(512, len(CLASSES))
    torch.save(net.state_dict(), tmp_path / "tv.pt")
    model = edge_from_weights(tmp_path / "tv.pt", "resnet18", CLASSES, SIZE)
    assert [type(m).__name__ for m in model.head] == ["Linear"] and model.meta.classes == CLASSES
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():  # our model normalises inside: the torchvision net is fed the normalised pixels
        assert torch.allclose(model(x), net.eval()((x - model.mean) / model.std), atol=1e-5)
    _retrain_and_export(model, tmp_path)


def test_our_state_dict_and_checkpoint_load(tmp_path: Path):
    ours = build_model("resnet18", 64, SIZE, seed=3, classes=CLASSES)
    torch.save(ours.state_dict(), tmp_path / "sd.pt")
    x = torch.rand(2, 3, SIZE, SIZE)
    for path in (tmp_path / "sd.pt", save_model(ours, tmp_path / "ckpt.pt")):
        model = edge_from_weights(path, "resnet18", CLASSES, SIZE)
        with torch.no_grad():
            assert torch.allclose(model(x), ours.eval()(x), atol=1e-6)


@pytest.mark.slow
def test_onnx_edge_model_is_converted_for_retraining(tmp_path: Path):
    ours = build_model("resnet18", 64, SIZE, seed=4, classes=CLASSES)
    export_onnx(ours, tmp_path / "edge.onnx")
    model = edge_from_onnx(tmp_path / "edge.onnx", CLASSES, SIZE, hidden=64)
    assert model.meta.family == "onnx" and [type(m).__name__ for m in model.head] == ["Linear", "ReLU", "Linear"]
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(model(x), ours.eval()(x), atol=1e-4)
    # its last block: the last layers with weights of the converted graph (resnet18: layer4's convolutions)
    assert all("layer4" in name for name in model.trainable_module_names("last_block")[1:])
    _retrain_and_export(model, tmp_path)


@pytest.mark.slow
def test_files_that_do_not_fit_are_refused_naming_file_and_mismatch(tmp_path: Path):
    with pytest.raises(UserModelError, match=r"edge_model.weights .*missing.pt: file not found"):
        edge_from_weights(tmp_path / "missing.pt", "resnet18", CLASSES, SIZE)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserModelError, match=r"junk.pt: not a weights file torch can read"):
        edge_from_weights(tmp_path / "junk.pt", "resnet18", CLASSES, SIZE)
    net = torchvision.models.resnet18(weights=None)  # fc with ImageNet's 1000 outputs
    torch.save(net.state_dict(), tmp_path / "imagenet.pt")
    with pytest.raises(UserModelError, match=r"imagenet.pt: the model has 1000 output classes, classes lists 3"):
        edge_from_weights(tmp_path / "imagenet.pt", "resnet18", CLASSES, SIZE)
    with pytest.raises(UserModelError, match=r"imagenet.pt: the weights do not fit a shufflenet_v2_x0_5"):
        net.fc = torch.nn.Linear(512, 3)
        torch.save(net.state_dict(), tmp_path / "imagenet.pt")
        edge_from_weights(tmp_path / "imagenet.pt", "shufflenet_v2_x0_5", CLASSES, SIZE)
    save_model(build_model("resnet18", 64, 48, classes=CLASSES), tmp_path / "big.pt")
    with pytest.raises(UserModelError, match=r"big.pt: made for 48px input, edge_model.input_size is 32"):
        edge_from_weights(tmp_path / "big.pt", "resnet18", CLASSES, SIZE)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(UserModelError, match=r"edge_model.onnx .*junk.onnx: not a readable ONNX model"):
        edge_from_onnx(tmp_path / "junk.onnx", CLASSES, SIZE, 64)
    export_onnx(build_model("resnet18", 64, 48, classes=CLASSES), tmp_path / "e48.onnx")
    with pytest.raises(UserModelError, match=r"e48.onnx: input 'input' has shape \[\?, 3, 48, 48\]; the config's "
                                             r"input_size 32 \(NCHW\) needs \[batch, 3, 32, 32\]"):
        edge_from_onnx(tmp_path / "e48.onnx", CLASSES, SIZE, 64)
    with pytest.raises(UserModelError, match=r"e48.onnx: the model has 3 output classes, classes lists 2"):
        edge_from_onnx(tmp_path / "e48.onnx", CLASSES[:2], 48, 64)
