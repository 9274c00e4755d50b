"""A new scheduler is one plan function plus one registration: the config, `ekya simulate`, `ekya capacity`
and `plan()` then all know it (the registry: controller/planner/schedulers.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pytest

from controller.cli import main
from controller.config import parse_config
from controller.planner import Plan, Problem, plan
from controller.planner.baselines import fair
from controller.planner.common import build_plan
from controller.planner.schedulers import Scheduler, register_scheduler, scheduler, scheduler_names
from controller.planner.synthetic_profiles import random_problem
from tests.repo import REPO_ROOT

PROFILES = REPO_ROOT / "bench" / "data" / "example_profiles.csv"
CAMERAS = [{"name": "cam0", "source": {"kind": "synthetic"}}]


# ------------------------------------------------------------------ the whole of a new scheduler
def greedy_inference(problem: Problem, parameters: Mapping[str, object]) -> Plan:
    """Every GPU to inference, split equally over the cameras; nothing retrains."""
    n = len(problem.cameras)
    share = min(problem.gpus / n, problem.job_cap) if n else 0.0
    return build_plan(problem, "greedy-inference", np.full(n, share), np.zeros(n), [None] * n)


register_scheduler(Scheduler("greedy-inference", greedy_inference, retrains=False))


# ------------------------------------------------------------------------------- what it gets
def test_the_registry_knows_it() -> None:
    assert "greedy-inference" in scheduler_names()
    assert scheduler("greedy-inference").retrains is False
    with pytest.raises(ValueError, match="unknown scheduler 'nope'; choose from .*greedy-inference"):
        scheduler("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_scheduler(Scheduler("greedy-inference", lambda problem, _: greedy_inference(problem, {})))


def test_the_config_accepts_it() -> None:
    config = parse_config({"cameras": CAMERAS, "scheduler": {"name": "greedy-inference"}})
    assert config.scheduler.name == "greedy-inference"


def test_plan_dispatches_to_it() -> None:
    problem = random_problem(4, 2, configs=3, seed=0)
    result = plan(problem, "greedy-inference")
    assert result.scheduler == "greedy-inference"
    assert all(a.config is None and a.training_share == 0.0 for a in result.allocations)
    assert sum(a.inference_share for a in result.allocations) == pytest.approx(problem.gpus)


def test_simulate_runs_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--profiles", str(PROFILES), "--gpus", "2", "--scheduler", "greedy-inference",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scheduler"] == "greedy-inference" and out["windows"]
    assert all(cam["training_share"] == 0.0 for w in out["windows"] for cam in w["cameras"].values())


def test_capacity_includes_it_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", "--profiles", str(PROFILES), "--max-gpus", "1", "--schedulers",
                 "noretrain,greedy-inference", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["schedulers"]) == {"noretrain", "greedy-inference"}


def test_plan_parameters_come_from_the_scheduler_config_keys() -> None:
    """How the controller calls a scheduler: its parameters read from the config's `scheduler:` keys."""
    config = parse_config({"cameras": CAMERAS, "scheduler": {"name": "fair", "fair_inference_weight": 0.3}})
    entry = scheduler(config.scheduler.name)
    parameters = entry.parameters_from(config.scheduler_settings)
    assert parameters == {"inference_fraction": 0.3, "fixed_config": config.fixed_retraining_config.name}
    problem = random_problem(3, 1, configs=4, seed=1)
    expected = fair(problem, config.fixed_retraining_config.name, 0.3)
    assert plan(problem, entry.name, **parameters).allocations == expected.allocations
