"""`ekya prepare cityscapes ROOT OUT` on a tiny Cityscapes tree the test writes (PNGs + gtFine polygon JSONs),
then examples/cityscapes.yaml against its output: every city is a camera whose windows replay its crops
with their labels, and `ekya bootstrap` trains initial models from the cities' history (one epoch)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from controller.cli import main
from controller.config import load_config
from tests.repo import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "cityscapes.yaml"
FRAMES = 4


def _fake_cityscapes(root: Path, cities: list[str]) -> None:
    rng = np.random.default_rng(0)
    for city in cities:
        for frame in range(FRAMES):
            stem = f"{city}_000000_{frame:06d}"
            image = root / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(image)
            objects = [{"label": "car", "polygon": [[2, 2], [40, 2], [40, 30], [2, 30]]},
                       {"label": "person", "polygon": [[50, 10], [70, 10], [70, 60], [50, 60]]},
                       {"label": "rider", "polygon": [[10, 35], [30, 35], [30, 60]]},  # not a class: skipped
                       {"label": "bus", "polygon": [[80, 1], [84, 1], [84, 4]]}]  # too small: skipped
            polygons = root / "gtFine" / "train" / city / f"{stem}_gtFine_polygons.json"
            polygons.parent.mkdir(parents=True, exist_ok=True)
            polygons.write_text(json.dumps({"imgHeight": 64, "imgWidth": 96, "objects": objects}))


@pytest.mark.slow
def test_prepare_then_the_example_config_runs_on_its_output(tmp_path: Path, capsys):
    raw = yaml.safe_load(EXAMPLE.read_text())
    cities = [camera["name"] for camera in raw["cameras"]]
    _fake_cityscapes(tmp_path / "cityscapes", cities)
    assert main(["prepare", "cityscapes", str(tmp_path / "cityscapes"), str(tmp_path / "data" / "cityscapes")]) == 0
    assert f"{len(cities)} cities, {len(cities) * FRAMES} frames -> {2 * len(cities) * FRAMES} crops" in \
        capsys.readouterr().out

    # the example where the README puts it, relative to the prepared data
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "examples" / "cityscapes.yaml")
    config = load_config(tmp_path / "examples" / "cityscapes.yaml")
    assert config.classes == ["person", "car", "truck", "bus", "bicycle", "motorcycle"]
    from controller.source_context import kind_of, source_context

    for city in cities:
        ctx = source_context(config, city)
        window = kind_of(config, city).open(config.camera(city).source, ctx).window(0, config.window_seconds)
        assert len(window) == 2 * FRAMES and window.images.shape[1:] == (64, 64, 3)
        assert sorted(set(window.labels.tolist())) == [config.classes.index("person"), config.classes.index("car")]

    # bootstrap from the cities' history: one epoch of small models (the example's own are for real data)
    raw.update(edge_model={"family": "resnet18", "input_size": 32, "hidden": 64},
               golden_model={"family": "resnet34", "input_size": 32, "hidden": 64},
               bootstrap={"history_windows": 1, "edge_crops": 32, "edge_epochs": 1, "golden_crops": 32,
                          "golden_epochs": 1}, data={"dir": str(tmp_path / "state")})
    small = tmp_path / "examples" / "small.yaml"
    small.write_text(yaml.safe_dump(raw))
    assert main(["bootstrap", "--config", str(small), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["edge_models"]) == set(cities) and result["golden_model"]
