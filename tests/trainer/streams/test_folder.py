"""The manifest/image-folder reader and `ekya prepare cityscapes` on a tiny generated fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.streams.cityscapes import CityscapesError, prepare_cityscapes
from trainer.streams.folder import FolderStream, ManifestError, write_manifest


def _png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (20, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_manifest_reader(tmp_path):
    rows = []
    for i in range(6):
        _png(tmp_path / "crops" / f"{i}.png", (40 * i, 0, 0))
        rows.append({"path": f"crops/{i}.png", "camera": "north" if i < 4 else "south",
                     "timestamp": i * 70.0, "label": ["car", "", "2", "bus", "person", "motorcycle"][i],
                     "track_id": 7 if i in (0, 1) else "", "frame_index": ""})
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    stream = FolderStream(manifest, crop_size=16, window_seconds=100)
    assert stream.cameras() == ["north", "south"]
    assert stream.windows("north") == [0, 1, 2]
    w0 = stream.load_window("north", 0)
    assert w0.images.shape == (2, 16, 16, 3) and w0.images.dtype == np.uint8
    assert w0.labels.tolist() == [1, -1] and w0.track_ids.tolist() == [7, 7]
    assert w0.frame_index.tolist() == [0, 1] and w0.images[1, 0, 0, 0] == 40
    w1 = stream.load_window("north", 1)
    assert w1.labels.tolist() == [2] and w1.track_ids[0] != 7
    assert len(stream.load_window("north", 9)) == 0
    with pytest.raises(KeyError, match="no camera"):
        stream.load_window("east", 0)


def test_manifest_errors(tmp_path):
    (tmp_path / "m.csv").write_text("path,camera\nx.png,c\n")
    with pytest.raises(ManifestError, match="missing column"):
        FolderStream(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,camera,timestamp,label\nx.png,c,0,plane\n")
    with pytest.raises(ManifestError, match=r"m.csv:2: unknown label 'plane'"):
        FolderStream(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,camera,timestamp\nx.png,c,0\n")
    with pytest.raises(ManifestError, match="cannot read image"):
        FolderStream(tmp_path / "m.csv").load_window("c", 0)


def _cityscapes_fixture(root: Path) -> None:
    objects = [
        {"label": "car", "polygon": [[10, 10], [50, 10], [50, 40], [10, 40]]},
        {"label": "person", "polygon": [[58, 5], [76, 5], [76, 45], [58, 45]]},
        {"label": "road", "polygon": [[0, 50], [99, 50], [99, 59], [0, 59]]},
        {"label": "bicycle", "polygon": [[80, 50], [84, 50], [84, 53]]},  # too small
        {"label": "cargroup", "polygon": [[0, 0], [30, 0], [30, 30]]},
    ]
    for city, frames in (("aachen", [(1, 19), (0, 19)]), ("bonn", [(0, 19)])):
        for seq, frame in frames:
            stem = f"{city}_{seq:06d}_{frame:06d}"
            _png(root / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png", (seq * 50, 100, 0), (100, 60))
            gt = root / "gtFine" / "train" / city / f"{stem}_gtFine_polygons.json"
            gt.parent.mkdir(parents=True, exist_ok=True)
            gt.write_text(json.dumps({"imgHeight": 60, "imgWidth": 100, "objects": objects}))


def test_prepare_cityscapes_fixture(tmp_path):
    root, out = tmp_path / "cs", tmp_path / "out"
    _cityscapes_fixture(root)
    stats = prepare_cityscapes(root, out)
    assert (stats.cities, stats.frames, stats.crops, stats.skipped_small) == (2, 3, 6, 3)
    stream = FolderStream(stats.manifest, crop_size=32, window_seconds=100)
    assert stream.cameras() == ["aachen", "bonn"]
    w = stream.load_window("aachen", 0)
    assert w.labels.tolist() == [1, 0, 1, 0] and w.frame_index.tolist() == [0, 0, 1, 1]
    assert w.images[0, 16, 16, 0] == 0 and w.images[2, 16, 16, 0] == 50  # sequence 0 comes first
    assert len(set(w.track_ids.tolist())) == 4


def test_prepare_cli(tmp_path, capsys):
    from controller.cli import main

    root = tmp_path / "cs"
    _cityscapes_fixture(root)
    assert main(["prepare", "cityscapes", str(root), str(tmp_path / "out")]) == 0
    assert "2 cities, 3 frames -> 6 crops" in capsys.readouterr().out
    assert main(["prepare", "cityscapes", str(tmp_path / "nowhere"), str(tmp_path / "o2")]) == 2
    assert "not a Cityscapes root" in capsys.readouterr().err
    with pytest.raises(CityscapesError):
        prepare_cityscapes(tmp_path / "nowhere", tmp_path / "o3")
