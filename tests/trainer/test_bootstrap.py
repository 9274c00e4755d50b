"""`ekya bootstrap`: trains tiny edge + golden models, caches them, reuses the cache."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import torch

from trainer.bootstrap import BootstrapSettings, bootstrap, cache_key
from trainer.models import load_model
from trainer.progress import PROGRESS_LOGGER
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


def test_bootstrap_reports_what_it_trains_and_how_far_it_is(tmp_path, caplog, monkeypatch):
    """A fresh bootstrap takes minutes at its default sizes: it says so, step by step (log lines where
    stderr is not a terminal, as in CI); a cached one says nothing."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    cams = default_cameras(2, crop_size=32, window_seconds=40)
    settings = TINY.model_copy(update={"edge_epochs": 2})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and never oversubscribes a busy box
    try:
        result = bootstrap(cams, settings, tmp_path)
    finally:
        torch.set_num_threads(threads)
    lines = [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]
    steps = [line.split(",")[0] for line in lines]
    for step in ("bootstrap: history windows camera 1/2", "bootstrap: history windows camera 2/2",
                 "bootstrap: edge model (shared) epoch 1/2", "bootstrap: edge model (shared) epoch 2/2",
                 "bootstrap: golden training crops camera 2/2", "bootstrap: golden held-out crops camera 2/2",
                 "bootstrap: golden model epoch 1/1"):
        assert step in steps, (step, lines)
    edge_epoch = next(line for line in lines if line.startswith("bootstrap: edge model (shared) epoch 2/2"))
    assert re.search(r"\d\.\d{3} held-out, loss \d+\.\d{3}, \d+(\.\d)? s$", edge_epoch), edge_epoch
    assert steps.index("bootstrap: history windows camera 2/2") < steps.index("bootstrap: edge model (shared) epoch 1/2")
    assert any(line.startswith("bootstrap: training the golden model: resnet34 32px") for line in lines)
    assert lines[-1].startswith("bootstrap: done in") and f"golden {result.accuracy['golden']:.3f}" in lines[-1]
    caplog.clear()
    assert bootstrap(cams, settings, tmp_path).reused
    assert not [r for r in caplog.records if r.name == PROGRESS_LOGGER]
