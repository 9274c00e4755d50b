"""controller.microprofiler.profile_camera on a tiny synthetic window (16 px crops, a small ResNet18)."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from controller.microprofiler import profile_camera, run_key
from controller.planner.profiles import ThroughputCurve
from tests.repo import REPO_ROOT
from trainer.configs import RetrainConfig
from trainer.models import build_model
from trainer.progress import PROGRESS_LOGGER
from trainer.streams.synthetic import CameraStreamSpec, generate_window
from trainer.training import evaluate


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and never oversubscribes a busy box
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def window():
    spec = CameraStreamSpec(name="tiny", seed=3, crop_size=16, window_seconds=40)
    data = generate_window(spec, 4)
    return data.split(0.3, seed=0)


@pytest.fixture(scope="module")
def model():
    return build_model("resnet18", hidden=16, input_size=16, seed=0)


def grid(epochs=(2, 6), subsamples=(0.5, 1.0)) -> list[RetrainConfig]:
    return [RetrainConfig(layers=layers, hidden=h, subsample=s, epochs=e)
            for layers, h in (("head", 16), ("all", 32)) for s in subsamples for e in epochs]


def test_one_option_per_config_in_order(window, model) -> None:
    train, test = window
    configs = grid()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prof = profile_camera(model, train, test, configs, subsample=0.3, epochs=3)
    assert [o.config for o in prof.options] == [c.name for c in configs]
    assert len(prof.runs) == 2  # epochs and subsample are extrapolated: one run per kind
    assert {r.key for r in prof.runs} == {run_key(c) for c in configs}
    for r in prof.runs:
        assert len(r.epoch_accuracies) == 3 and r.seconds_per_epoch > 0
    for o in prof.options:
        assert o.camera == "tiny"
        assert 0.0 <= o.end_accuracy <= 1.0 and o.gpu_seconds > 0
    assert 0.0 <= prof.start_accuracy <= 1.0 and prof.seconds > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # serving model untouched
    # the best trial run is a real model the controller can serve: its accuracy is the one reported
    assert prof.trial_model is not None and prof.trial_model is not model
    assert prof.trial_accuracy == max(r.epoch_accuracies[-1] for r in prof.runs)
    assert evaluate(prof.trial_model, test) == pytest.approx(prof.trial_accuracy, abs=1e-9)


def test_degenerate_profile_never_drops_a_config(window, model) -> None:
    train, test = window
    configs = grid(epochs=(1, 30))
    prof = profile_camera(model, train, test, configs, subsample=0.01, epochs=1)  # one point: no curve fit
    assert [o.config for o in prof.options] == [c.name for c in configs]
    assert all(0.0 <= o.end_accuracy <= 1.0 for o in prof.options)


def test_costs_scale_with_epochs_data_and_share(window, model) -> None:
    train, test = window
    configs = grid(epochs=(2, 6), subsamples=(0.5, 1.0))
    prof = profile_camera(model, train, test, configs, subsample=0.3, epochs=2, profile_share=0.5)
    cost = {o.config: o.gpu_seconds for o in prof.options}
    runs = {r.key: r for r in prof.runs}
    fraction = round(0.3 * train.num_labelled) / train.num_labelled
    for kind in ("head-h16", "all-h32"):
        run = runs[run_key(RetrainConfig.from_name(f"e2-{kind}-s1"))]
        assert (run.setup_seconds > 0) == (kind.startswith("head"))  # cached backbone features: paid once
        for epochs in (2, 6):
            # (setup + seconds per epoch x epochs) at share 0.5 x throughput(0.5) = GPU-seconds at one GPU
            expected = (run.setup_seconds + run.seconds_per_epoch * epochs) * 0.5 / fraction
            assert cost[f"e{epochs}-{kind}-s1"] == pytest.approx(expected)
            assert cost[f"e{epochs}-{kind}-s1"] == pytest.approx(2 * cost[f"e{epochs}-{kind}-s0.5"])
    assert cost["e6-all-h32-s1"] == pytest.approx(3 * cost["e2-all-h32-s1"])
    # a head-only epoch on cached features is far cheaper than one through the whole network
    assert runs[run_key(configs[0])].seconds_per_epoch < 0.5 * runs[run_key(configs[-1])].seconds_per_epoch
    curve = ThroughputCurve.from_points({0.5: 80.0, 1.0: 100.0})
    again = profile_camera(model, train, test, configs[-1:], subsample=0.3, epochs=1, profile_share=0.5,
                           throughput=curve)
    o, r = again.options[0], again.runs[0]
    assert o.gpu_seconds == pytest.approx(r.seconds_per_epoch * 0.8 * 6 * 1.0 / fraction)


def test_tiny_budget_profiles_fewer_kinds(window, model, caplog) -> None:
    train, test = window
    configs = grid()
    caplog.set_level(logging.DEBUG, logger=PROGRESS_LOGGER)
    caplog.set_level(logging.DEBUG, logger="controller.microprofiler")
    prof = profile_camera(model, train, test, configs, subsample=0.3, epochs=2, budget_seconds=1e-6)
    assert len(prof.runs) == 1  # the first kind is always profiled, then the budget is spent
    first = run_key(configs[0])
    assert [o.config for o in prof.options] == [c.name for c in configs if run_key(c) == first]
    # One info line for the camera; a debug line per kind, profiled or not.
    summary = [r.getMessage() for r in caplog.records if r.name == "controller.microprofiler"]
    assert len(summary) == 1 and summary[0].startswith(f"tiny: micro-profiled 1 config kind(s) ({len(configs)} configs)")
    assert "1 of 2 config kinds not profiled" in summary[0]
    kinds = [r for r in caplog.records if r.name == PROGRESS_LOGGER]
    assert all(r.levelno == logging.DEBUG for r in kinds)
    assert [r.getMessage().split(",")[0] for r in kinds] == ["micro-profiling tiny: config kind 1/2",
                                                             "micro-profiling tiny: config kind 2/2"]


def test_a_kind_that_would_overrun_the_budget_is_not_started(window, model) -> None:
    # On a slow CPU an all-layers run can take most of a window; it is predicted from one crop's forward
    # pass and skipped where it cannot finish, while a cheap kind after it is still profiled.
    train, test = window
    head, all_layers, wide_head = (RetrainConfig(layers="head", hidden=16, epochs=2),
                                   RetrainConfig(layers="all", hidden=32, epochs=2),
                                   RetrainConfig(layers="head", hidden=64, epochs=2))
    full = profile_camera(model, train, test, [head, all_layers, wide_head], subsample=1.0, epochs=2)
    assert [r.key for r in full.runs] == [run_key(c) for c in (head, all_layers, wide_head)]
    t0 = time.monotonic()
    profile_camera(model, train, test, [head], subsample=1.0, epochs=2)
    head_seconds = time.monotonic() - t0
    # the head run fits the budget with the wide head's after it; the all-layers run (two training
    # passes of forward and backward, about 3x the head run's one forward pass each) does not
    bounded = profile_camera(model, train, test, [head, all_layers, wide_head], subsample=1.0, epochs=2,
                             budget_seconds=2.5 * head_seconds)
    assert [r.key for r in bounded.runs] == [run_key(head), run_key(wide_head)]
    assert {o.config for o in bounded.options} == {head.name, wide_head.name}


def test_predicted_run_seconds() -> None:
    from controller.microprofiler import predicted_run_seconds

    head = RetrainConfig(layers="head", hidden=64, epochs=5)
    assert predicted_run_seconds(head, 0.01, 100, 50) == pytest.approx(1.0)  # one forward pass of the sample
    every = RetrainConfig(layers="all", hidden=64, epochs=5)
    assert predicted_run_seconds(every, 0.01, 100, 50) == pytest.approx(5 * 0.01 * 350)


def test_epoch_time_excludes_validation(window, model, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer import training

    real = training._in_batches  # every evaluation pass (not the all-layers training epochs) goes through it

    validation_seconds = 2.0  # well above an epoch of this run's training, even on a slow 2-core CPU (~1.1 s)

    def slow_pass(*args, **kwargs):
        time.sleep(validation_seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "_in_batches", slow_pass)
    train, test = window
    all_layers = [c for c in grid() if c.layers == "all"][:1]  # head-only runs validate on cached features
    prof = profile_camera(model, train, test, all_layers, subsample=0.1, epochs=2)
    assert prof.seconds >= 3 * validation_seconds  # start + 2 validations
    assert prof.runs[0].seconds_per_epoch < validation_seconds  # the cost model counts training only


def test_bench_grids(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    path = REPO_ROOT / "bench" / "microprofiler.py"
    spec = importlib.util.spec_from_file_location("bench_microprofiler", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_microprofiler", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    assert len(mod.config_grid("full")) == 18
    assert len(mod.config_grid("reduced")) == 12
    assert {c.epochs for c in mod.config_grid("quick")} == {5, 10}
    assert [c.name for c in mod.config_grid("e5-all-h1024-s0.1, e15-head-h64-s1")] == [
        "e5-all-h1024-s0.1", "e15-head-h64-s1"]
