"""The class list is configuration: its checks, what reads it (folder manifests, the spool's labels, the
camera models' output width, the bootstrap's models), and the default that keeps existing configs as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from controller.config import ConfigError, parse_config
from controller.source_context import kind_of, source_context
from trainer.streams.base import CLASSES

FOLDER = {"kind": "folder", "manifest": "m.csv", "fps": 2}


def _manifest(tmp_path: Path) -> None:
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    rows = ["path,camera,timestamp,label", "0.png,gate,0,van", "1.png,gate,0.5,Lorry", "2.png,gate,1,2", "3.png,gate,1.5,"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")


def test_the_deployments_classes_name_the_labels_of_a_folder_source(tmp_path: Path):
    _manifest(tmp_path)
    config = parse_config({"classes": ["van", "lorry", "tram"], "cameras": [{"name": "gate", "source": FOLDER}],
                           "edge_model": {"input_size": 16}}, base_dir=tmp_path)
    ctx = source_context(config, "gate")
    window = kind_of(config, "gate").open(config.camera("gate").source, ctx).window(0, config.window_seconds)
    assert window.labels.tolist() == [0, 1, 2, -1] and window.num_classes == 3
    # a manifest label that is not one of them: the file, the line and the classes are named
    (tmp_path / "m.csv").write_text("path,camera,timestamp,label\n0.png,gate,0,car\n")
    config = parse_config({"classes": ["van", "lorry"], "cameras": [{"name": "gate", "source": FOLDER}],
                           "edge_model": {"input_size": 16}}, base_dir=tmp_path)
    with pytest.raises(Exception, match=r"m.csv:2: unknown label 'car'; expected one of van, lorry"):
        kind_of(config, "gate").open(config.camera("gate").source, source_context(config, "gate"))


def test_class_list_checks_and_default():
    synthetic = [{"name": "c", "source": {"kind": "synthetic", "seed": 1}}]
    assert parse_config({"cameras": synthetic}).classes == list(CLASSES)
    with pytest.raises(ConfigError, match=r"classes\[2\]: duplicate class 'a'"):
        parse_config({"cameras": synthetic, "classes": ["a", "b", "a"]})
    with pytest.raises(ConfigError, match=r"classes: .*at least 2"):
        parse_config({"cameras": synthetic, "classes": ["a"]})
    with pytest.raises(ConfigError, match=r"synthetic cameras \(cameras\[0\]\) draw the original six classes"):
        parse_config({"cameras": synthetic, "classes": ["a", "b"]})


def test_camera_models_and_spool_follow_the_class_count(tmp_path: Path):
    from controller.layout import DataLayout
    from controller.runtime.deployment import Deployment
    from protocol.spool import Spool
    from trainer.streams.base import WindowData

    _manifest(tmp_path)
    config = parse_config({"classes": ["van", "lorry", "tram", "bus", "cab", "bike", "cart"],
                           "cameras": [{"name": "gate", "source": FOLDER}], "edge_model": {"input_size": 16},
                           "data": {"dir": str(tmp_path / "data")}}, base_dir=tmp_path)
    assert Deployment(config).model_spec("gate").output_dims == (7,)
    spool = Spool(DataLayout(tmp_path / "data"), "gate", 1 << 20, num_classes=7)
    crops = WindowData(np.zeros((2, 16, 16, 3), np.uint8), [-1, -1], [1, 2], [0, 1], [0.0, 0.1])
    chunk = spool.write_chunk(0, 0, crops)
    spool.write_labels(chunk, np.array([6, 5]))  # class 6: valid with 7 classes (not with the default six)
    data, _ = spool.read_window(0)
    assert data.labels.tolist() == [6, 5] and data.num_classes == 7
    spool.write_labels(chunk, np.array([7, 5]))  # beyond the class list: quarantined, not trained on
    assert spool.read_window(0)[0].labels.tolist() == [-1, -1]
