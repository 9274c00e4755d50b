"""`ekya bootstrap`: trains tiny edge + golden models, caches them, reuses the cache."""

from __future__ import annotations

import json

from trainer.bootstrap import BootstrapSettings, bootstrap, cache_key
from trainer.models import load_model
from trainer.streams.synthetic import default_cameras

TINY = BootstrapSettings(edge_family="shufflenet_v2_x0_5", edge_input_size=32, edge_crops=120, edge_epochs=1,
                         golden_family="resnet34", golden_input_size=32, golden_crops=120, golden_epochs=1)


def test_bootstrap_trains_caches_and_reuses(tmp_path):
    cams = default_cameras(2, crop_size=32, window_seconds=40)
    first = bootstrap(cams, TINY, tmp_path, progress=False)
    assert not first.reused and set(first.edge_models) == {"cam0", "cam1"}
    assert first.edge_models["cam0"] == first.edge_models["cam1"]  # one shared model, as the original
    edge, golden = load_model(first.edge_models["cam0"]), load_model(first.golden_model)
    assert edge.meta.family == "shufflenet_v2_x0_5" and edge.meta.extra["role"] == "edge"
    assert edge.meta.extra["lr_schedule"] == golden.meta.extra["lr_schedule"] == "cosine"
    assert golden.meta.family == "resnet34" and golden.meta.hidden == 1024
    assert 0.0 <= first.accuracy["golden"] <= 1.0
    again = bootstrap(cams, TINY, tmp_path, progress=False)
    assert again.reused and again.edge_models == first.edge_models and again.key == first.key
    other = TINY.model_copy(update={"seed": 1})
    assert cache_key(cams, other) != first.key
    # A cache without its manifest (an interrupted bootstrap) is not reused.
    (first.directory / "manifest.json").unlink()
    assert not bootstrap(cams, TINY.model_copy(update={"golden": False}), tmp_path, progress=False).reused


def test_bootstrap_cli_json(tmp_path, capsys, monkeypatch):
    import trainer.bootstrap as b
    from controller.cli import main

    monkeypatch.setattr(b, "BootstrapSettings", lambda **kw: TINY.model_copy(update={**kw, "golden": False}))
    assert main(["bootstrap", "--cameras", "1", "--crop-size", "32", "--input-size", "32",
                 "--model", "shufflenet_v2_x0_5", "--data-dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["golden_model"] is None and "cam0" in out["edge_models"]
