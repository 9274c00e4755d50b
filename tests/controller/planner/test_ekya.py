"""Device-aware planning, the ekya optimiser, the knapsack DP, and adversarial cases for thief and ekya."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from controller.planner.api import plan, replan
from controller.planner.baselines import fair, noretrain
from controller.planner.ekya import ekya
from controller.planner.grid import build_tables, mckp
from controller.planner.objective import CameraStatus, evaluate
from controller.planner.packing import loads, pack
from controller.planner.placement import device_loads
from controller.planner.profiles import CameraState, Plan, Problem, RetrainOption, ThroughputCurve
from controller.planner.separable import SeparableModel
from controller.planner.synthetic_profiles import random_problem
from controller.planner.thief import thief

MEASURED = ThroughputCurve.from_points({"1.0": 5493, "0.5": 5265, "0.25": 3427, "0.1": 1723})
SCHEDULERS = {"thief": thief, "ekya": ekya}


def assert_packs(pl: Plan, gpus: int) -> None:
    assert pl.placement_ok
    assert pl.total_share <= gpus + 1e-6
    for a in pl.allocations:
        assert 0 <= a.inference_share <= 1.0 + 1e-9 and 0 <= a.training_share <= 1.0 + 1e-9
        assert (a.inference_share > 0) == (a.inference_device is not None)
        assert (a.training_share > 0) == (a.training_device is not None)
        assert a.config is not None or a.training_share == 0
    assert all(load <= 1.0 + 1e-6 for load in device_loads(pl.allocations, gpus))


def assert_consistent(problem: Problem, pl: Plan) -> None:
    """The reported objective is the exact one of the reported allocation."""
    assert evaluate(problem, pl.allocations).mean_accuracy == pytest.approx(pl.planned_accuracy, abs=1e-9)


@pytest.mark.parametrize("name", ["thief", "ekya"])
@pytest.mark.parametrize("cameras,gpus,seed", [(7, 3, 0), (20, 3, 1), (5, 2, 2), (13, 5, 3), (3, 4, 4)])
def test_multi_gpu_plans_pack(name: str, cameras: int, gpus: int, seed: int) -> None:
    p = random_problem(cameras, gpus, configs=18, seed=seed)
    pl = SCHEDULERS[name](p)
    assert_packs(pl, gpus)
    assert_consistent(p, pl)
    assert pl.planned_accuracy >= noretrain(p).planned_accuracy - 1e-9 or not noretrain(p).placement_ok


def test_large_case_packs_and_beats_unplaced_thief() -> None:
    p = random_problem(60, 8, configs=18, seed=7)
    for pl in (thief(p), ekya(p, with_thief=False)):
        assert_packs(pl, 8)
    unplaced = thief(p, pack_devices=False)
    assert ekya(p).planned_accuracy >= max(thief(p).planned_accuracy, unplaced.planned_accuracy) - 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_ekya_never_below_thief(seed: int) -> None:
    p = random_problem(6, 2, configs=18, seed=seed, window=120.0)
    t, e = thief(p), ekya(p)
    assert e.planned_accuracy >= t.planned_accuracy - 1e-12
    assert_packs(e, 2)


def test_mckp_is_exact() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n, X, B = 3, 5, int(rng.integers(0, 9))
        vals = rng.uniform(0, 1, (n, X))
        vals[rng.random((n, X)) < 0.2] = -np.inf
        vals[:, 0] = rng.uniform(0, 0.2, n)  # always a feasible choice
        best = max(sum(vals[v, x] for v, x in enumerate(xs))
                   for xs in itertools.product(range(X), repeat=n) if sum(xs) <= B)
        total, xs = mckp(vals, B)
        assert total == pytest.approx(best)
        assert xs.sum() <= B and sum(vals[v, x] for v, x in enumerate(xs)) == pytest.approx(best)


def test_pack_repairs_an_unpackable_allocation() -> None:
    p = random_problem(6, 2, configs=6, seed=1)
    t = build_tables(p, SeparableModel(p), 20, 0.0)
    # three training jobs of 0.6 cannot share two devices, though the total fits (2.0)
    li = np.array([1, 1, 1, 1, 0, 0])
    lt = np.array([12, 12, 12, 0, 0, 0])
    assert np.isfinite(t.U[np.arange(3), li[:3], lt[:3]]).all()
    li2, lt2, di, dt, repaired = pack(t, li, lt, 2)
    assert repaired
    assert np.all(loads(li2, lt2, di, dt, 2) <= 20)
    assert np.all(li2 <= t.ki - 1) and np.all(lt2 <= t.kt - 1)


# ---- adversarial cases ---------------------------------------------------------------------------

def make(cams: list[tuple[float, list[tuple[float, float]]]], gpus: int, window: float = 200.0,
         throughput: ThroughputCurve | None = None) -> Problem:
    states = tuple(
        CameraState(f"c{v}", a0, tuple(RetrainOption(f"c{v}", f"k{j}", e, g) for j, (e, g) in enumerate(opts)))
        for v, (a0, opts) in enumerate(cams))
    return Problem(states, gpus, window=window, throughput=throughput or ThroughputCurve())


def check_floor(p: Problem, pl: Plan, fair_bound: float = 0.01) -> None:
    """Never below noretrain; never below fair (any single config) by more than a small bound."""
    nr = noretrain(p)
    assert pl.planned_accuracy >= nr.planned_accuracy - 1e-9
    configs = {o.config for c in p.cameras for o in c.options}
    for cfg in sorted(configs)[:4]:
        f = fair(p, cfg)
        if f.placement_ok:
            assert pl.planned_accuracy >= f.planned_accuracy - fair_bound, (cfg, pl.planned_accuracy, f.planned_accuracy)
    assert_packs(pl, p.gpus)
    assert_consistent(p, pl)


@pytest.mark.parametrize("name", ["thief", "ekya"])
def test_all_configs_useless_is_noretrain(name: str) -> None:
    p = make([(0.7, [(0.6, 5.0), (0.7, 1.0), (0.65, 40.0)]) for _ in range(5)], 2)
    pl = SCHEDULERS[name](p)
    assert all(a.config is None and a.training_share == 0 for a in pl.allocations)
    # every camera keeps its model at full inference (noretrain's equal split of 0.4 does not pack on
    # two devices, so it is lower here)
    assert pl.planned_accuracy == pytest.approx(0.7, abs=1e-9)
    check_floor(p, pl)


@pytest.mark.parametrize("name", ["thief", "ekya"])
def test_one_camera_with_a_huge_gain(name: str) -> None:
    cams = [(0.8, [(0.81, 60.0)]) for _ in range(5)] + [(0.2, [(0.95, 20.0), (0.9, 4.0)])]
    p = make(cams, 1)
    pl = SCHEDULERS[name](p)
    assert pl.by_camera()["c5"].config is not None
    check_floor(p, pl)


@pytest.mark.parametrize("name", ["thief", "ekya"])
def test_tiny_window_nothing_can_finish(name: str) -> None:
    p = make([(0.6, [(0.9, 30.0), (0.8, 5.0)]) for _ in range(4)], 1, window=2.0)
    pl = SCHEDULERS[name](p)
    assert all(a.config is None for a in pl.allocations)
    check_floor(p, pl)


@pytest.mark.parametrize("name", ["thief", "ekya"])
@pytest.mark.parametrize("seed", range(3))
def test_measured_sublinear_throughput(name: str, seed: int) -> None:
    base = random_problem(8, 2, configs=18, seed=seed, window=150.0)
    p = Problem(base.cameras, 2, window=150.0, throughput=MEASURED)
    pl = SCHEDULERS[name](p)
    check_floor(p, pl)


@pytest.mark.parametrize("name", ["thief", "ekya"])
def test_many_cameras_on_one_gpu(name: str) -> None:
    p = random_problem(30, 1, configs=6, seed=3)
    pl = SCHEDULERS[name](p)
    check_floor(p, pl, fair_bound=0.02)


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_floors(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cams, gpus = int(rng.integers(2, 9)), int(rng.integers(1, 4))
    p = random_problem(cams, gpus, configs=int(rng.integers(1, 19)), seed=seed, window=float(rng.uniform(20, 300)))
    for fn in (thief, ekya):
        check_floor(p, fn(p))


def test_a_min_floor_is_held_when_possible() -> None:
    base = random_problem(6, 2, configs=18, seed=5)
    p = Problem(base.cameras, 2, a_min=0.5)
    for fn in (thief, ekya):
        pl = fn(p)
        inf = {a.camera: a.inference_share for a in pl.allocations}
        for c in p.cameras:
            if c.accuracy >= 0.5:
                assert c.accuracy * p.inference.scale(inf[c.name]) >= 0.5 - 1e-9


def test_api_ekya_plan_and_replan() -> None:
    p = random_problem(4, 2, seed=5)
    first = plan(p, "ekya")
    assert first.scheduler == "ekya"
    assert_packs(first, 2)
    statuses = [CameraStatus(c.name, c.accuracy, a.config, 0.5 if a.config else 0.0, False, a.config is not None)
                for c, a in zip(p.cameras, first.allocations)]
    again = replan(p, statuses, 40.0, "ekya")
    assert again.window == pytest.approx(160.0)
    assert_packs(again, 2)


@pytest.mark.parametrize("name", ["thief", "ekya"])
def test_no_time_left(name: str) -> None:
    p = random_problem(3, 1, seed=0, window=0.0)
    pl = SCHEDULERS[name](p)
    assert all(a.config is None for a in pl.allocations)
    assert_consistent(p, pl)
    assert_packs(pl, 1)
