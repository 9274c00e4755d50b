"""Learning-curve fits, micro-profile predictions, pruning and the prediction ledger."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.planner.curves import extrapolation_point, fit_learning_curve
from controller.planner.microprofile import (
    ConfigPruner,
    ConfigSpec,
    CostCorrection,
    MicroProfile,
    Outcome,
    PredictionLedger,
    predict,
    predict_options,
)
from controller.planner.profiles import RetrainOption, ThroughputCurve


def saturating(a0: float, g: float, k: float, x: np.ndarray) -> np.ndarray:
    return a0 + g * k * x / (1 + k * x)


@pytest.mark.parametrize("a0,g,k", [(0.6, 0.25, 0.4), (0.5, 0.4, 0.1), (0.8, 0.1, 2.0), (0.7, -0.1, 1.0)])
def test_fit_recovers_synthetic_curves(a0: float, g: float, k: float) -> None:
    xs = np.arange(1, 6, dtype=float)
    c = fit_learning_curve(a0, xs, saturating(a0, g, k, xs))
    assert c.fitted
    for x in (5.0, 15.0, 30.0):
        assert c(x) == pytest.approx(float(saturating(a0, g, k, np.array([x]))[0]), abs=0.02)


def test_fit_is_robust_to_an_outlier() -> None:
    xs = np.arange(1, 6, dtype=float)
    ys = saturating(0.6, 0.25, 0.5, xs)
    ys[2] = 0.2  # a bad evaluation
    c = fit_learning_curve(0.6, xs, ys)
    assert c.fitted and abs(c(30) - float(saturating(0.6, 0.25, 0.5, np.array([30.0]))[0])) < 0.05


@pytest.mark.parametrize("ys", [[], [float("nan")] * 5, [0.7], [0.7, 0.7, 0.7, 0.7, 0.7], [1.0, 1.0, 1.0],
                                [0.0, 0.9, 0.1, 0.8, 0.2]])
def test_degenerate_data_never_drops(ys: list[float]) -> None:
    c = fit_learning_curve(0.6, list(range(1, len(ys) + 1)), ys)
    v = c(30)
    assert math.isfinite(v) and 0.0 <= v <= 1.0


def test_start_at_one_and_fallback_is_conservative() -> None:
    c = fit_learning_curve(1.0, [1, 2], [1.0, 1.0])
    assert c(10) == pytest.approx(1.0)
    c = fit_learning_curve(0.6, [1], [0.7])
    assert not c.fitted and c(30) == pytest.approx(0.7)


def test_extrapolation_point() -> None:
    assert extrapolation_point(30, 1.0, 0.1, 0.0) == 30
    assert extrapolation_point(30, 1.0, 0.1, 1.0) == pytest.approx(300)
    assert extrapolation_point(5, 0.1, 0.1) == pytest.approx(5)


def test_predict_scales_cost_through_throughput() -> None:
    mp = MicroProfile("cam", ConfigSpec("all-d1-e30", 30, 1.0), 0.6, (0.66, 0.7, 0.72, 0.73, 0.74), 2.0,
                      profile_fraction=0.1, profile_share=0.25)
    lin = predict(mp).option
    assert lin.gpu_seconds == pytest.approx(2.0 * 0.25 * 30 * 10)
    curve = ThroughputCurve.from_points({"1.0": 5493, "0.5": 5265, "0.25": 3427, "0.1": 1723})
    meas = predict(mp, curve).option
    assert meas.gpu_seconds == pytest.approx(2.0 * curve(0.25) * 300)
    assert 0.74 <= lin.end_accuracy <= 1.0
    bad = MicroProfile("cam", ConfigSpec("x", 5, 0.1), 0.6, (), 1.0)
    opts = predict_options([mp, bad])
    assert [o.config for o in opts] == ["all-d1-e30", "x"]  # never dropped
    assert opts[1].end_accuracy == pytest.approx(0.6)


def test_reset_head_curve_starts_from_chance_not_the_serving_accuracy() -> None:
    """A config with a new head climbs from chance: anchoring its curve at the serving model's 0.9 would
    read the climb 0.3 -> 0.7 as a collapse and predict far too little."""
    accs = (0.30, 0.45, 0.58, 0.66, 0.71)
    serving = MicroProfile("cam", ConfigSpec("e15", 15, 0.1), 0.9, accs, 1.0, profile_fraction=0.1)
    reset = MicroProfile("cam", ConfigSpec("e15", 15, 0.1), 0.9, accs, 1.0, profile_fraction=0.1,
                         curve_start=1 / 6)
    at_serving, at_chance = predict(serving), predict(reset)
    assert at_chance.curve.start == pytest.approx(1 / 6) and at_chance.curve.gain > 0
    assert at_chance.option.end_accuracy > 0.75  # the climb goes on past the 5 profiled epochs
    assert at_serving.option.end_accuracy < at_chance.option.end_accuracy
    assert at_chance.option.end_accuracy <= 1.0


def test_pruner_drops_worst_every_two_windows() -> None:
    names = [f"c{k}" for k in range(8)]
    pr = ConfigPruner(names, period=2, fraction=0.25, min_keep=4)
    for w in range(4):
        opts = [RetrainOption("cam", n, 0.6 + 0.02 * k, 10.0 + k) for k, n in enumerate(names)]
        opts[0] = RetrainOption("cam", "c0", 0.55, 100.0)  # dominated: worse and dearer
        pr.observe(opts, 0.6)
        dropped = pr.end_window()
        if w == 0:
            assert dropped == [] and len(pr.active) == 8
        if w == 1:
            assert len(dropped) == 2 and "c0" in dropped
    assert len(pr.active) >= 4
    again = ConfigPruner.from_dict(pr.to_dict())
    assert again.active == pr.active


def test_ledger() -> None:
    led = PredictionLedger()
    led.record(Outcome("a", 0, "x", 0.8, 0.75, 10, 12))
    led.record(Outcome("a", 1, "x", 0.7, 0.72, 10, 8))
    assert led.median_abs_accuracy_error() == pytest.approx(0.035)
    assert PredictionLedger.from_dict(led.to_dict()).records == led.records


def test_ledger_cost_correction_follows_the_recent_jobs() -> None:
    led = PredictionLedger(keep=50)
    assert led.cost_correction().identity  # nothing back yet: plan on the micro-profile as it is
    for ratio in (3.0, 4.0):
        led.record(Outcome("a", 0, "x", 0.8, 0.8, 1.0, ratio))
    assert led.cost_correction(min_records=3).identity  # two jobs are not evidence enough
    led.record(Outcome("a", 0, "x", 0.8, 0.8, 1.0, 5.0))
    assert led.cost_correction() == CostCorrection(0.0, pytest.approx(4.0))  # one size of job: a factor only
    for _ in range(20):  # the recent jobs decide: the machine got quieter
        led.record(Outcome("a", 1, "x", 0.8, 0.8, 2.0, 3.0))
    assert led.cost_correction() == CostCorrection(0.0, pytest.approx(1.5))
    led.record(Outcome("a", 2, "x", 0.8, 0.8, 0.0, 3.0))  # no prediction: ignored
    assert led.cost_correction().scale == pytest.approx(1.5)
    for _ in range(30):  # 54 outcomes in all
        led.record(Outcome("a", 3, "x", 0.8, 0.8, 1.0, 100.0))
    assert led.cost_correction().scale == 10.0  # bounded: one odd window cannot make every job look impossible
    assert len(led.records) == 50  # the ledger keeps the newest outcomes only


def test_a_fixed_cost_per_job_is_told_apart_from_a_factor() -> None:
    """Head-only jobs predicted at a fraction of a second that take 3 s, and costlier jobs that take 3 s
    plus 1.5x their prediction: one factor (the median ratio) would multiply every costly job by ~10; the
    affine fit finds the 3 s per job and the 1.5x, and predicts both kinds of jobs."""
    led = PredictionLedger()
    truth = CostCorrection(3.0, 1.5)
    for predicted in (0.05, 0.1, 0.2, 0.4, 4.0, 8.0, 12.0):
        led.record(Outcome("a", 0, "x", 0.8, 0.8, predicted, truth.apply(predicted)))
    led.record(Outcome("a", 0, "x", 0.8, 0.8, 0.1, 40.0))  # one odd job (a stall) does not move it
    fitted = led.cost_correction()
    assert fitted.overhead == pytest.approx(3.0, abs=0.15) and fitted.scale == pytest.approx(1.5, abs=0.05)
    assert fitted.apply(10.0) == pytest.approx(18.0, rel=0.02) and fitted.apply(0.1) == pytest.approx(3.15, abs=0.1)
    assert fitted.undo(fitted.apply(10.0)) == pytest.approx(10.0)


def test_small_jobs_alone_say_there_is_an_overhead_not_a_factor() -> None:
    """Head-only jobs predicted at 0.05-0.5 s that take 2-5 s: a factor of ~10-40 cannot be told from a
    fixed cost of ~3 s on such jobs; planned with the factor, a 10 s job would look like a 100 s one."""
    led = PredictionLedger()
    rng = np.random.default_rng(0)
    for predicted in (0.05, 0.1, 0.14, 0.2, 0.3, 0.36, 0.5):
        led.record(Outcome("a", 0, "x", 0.8, 0.8, predicted, 3.0 + rng.uniform(-1.0, 2.0)))
    fitted = led.cost_correction()
    assert fitted.scale == pytest.approx(1.0) and 2.0 < fitted.overhead < 5.0
    assert fitted.apply(10.0) < 16.0
