"""The closed-form window objective vs brute-force time stepping; profile types."""

from __future__ import annotations

import numpy as np
import pytest

from controller.planner.objective import FastEvaluator, batch_mean, evaluate
from controller.planner.profiles import (
    CameraAllocation,
    CameraState,
    InferenceProfile,
    Problem,
    RetrainOption,
    ThroughputCurve,
)


def brute_force(problem: Problem, allocs: list[CameraAllocation], dt: float = 2e-3) -> np.ndarray:
    """Fine time-stepped integration with the original's equal split on completion; a job's work starts
    after its camera's fixed latency."""
    cams = problem.cameras
    n = len(cams)
    opts = [{o.config: o for o in c.options} for c in cams]
    base = np.array([c.accuracy for c in cams])
    inf = np.array([a.inference_share for a in allocs])
    tr = np.array([a.training_share for a in allocs])
    running = np.array([a.config is not None for a in allocs])
    work = np.array([opts[k][a.config].gpu_seconds if a.config else 0.0 for k, a in enumerate(allocs)])
    end = np.array([opts[k][a.config].end_accuracy if a.config else base[k] for k, a in enumerate(allocs)])
    delay = np.where(running, problem.latencies(), 0.0)
    idle = tr[~running].sum()
    tr[~running] = 0
    inf += idle / (running.sum() + n)
    tr[running] += idle / (running.sum() + n)
    acc = np.zeros(n)
    steps = round(problem.window / dt)
    for _ in range(steps):
        acc += base * problem.inference.scale_array(inf) * dt
        rates = problem.throughput.array(tr)
        started = delay <= 1e-12
        work = np.where(running & started, work - rates * dt, work)
        delay = np.where(started, delay, delay - dt)
        fin = running & (work <= 1e-12)
        if fin.any():
            base[fin] = end[fin]
            running &= ~fin
            freed = tr[fin].sum()
            tr[fin] = 0
            k = running.sum() + n
            inf += freed / k
            tr[running] += freed / k
    return acc / problem.window


def random_case(rng: np.random.Generator, n: int, curve: ThroughputCurve,
                latency: float = 0.0) -> tuple[Problem, list[CameraAllocation]]:
    cams, allocs = [], []
    for v in range(n):
        a0 = rng.uniform(0.4, 0.8)
        opt = RetrainOption(f"c{v}", "x", float(rng.uniform(a0, 0.95)), float(rng.uniform(0.5, 6.0)))
        own = float(rng.uniform(0.0, 3.0)) if latency and v == 0 else None  # a camera's own latency
        cams.append(CameraState(f"c{v}", a0, (opt,), latency=own))
        retrain = rng.random() < 0.8
        allocs.append(CameraAllocation(f"c{v}", "x" if retrain else None, float(rng.uniform(0.02, 0.3)),
                                       float(rng.uniform(0.05, 0.4))))
    return Problem(tuple(cams), 2, window=20.0, throughput=curve, job_latency=latency), allocs


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("latency", [0.0, 2.5])
def test_closed_form_matches_time_stepping(seed: int, latency: float) -> None:
    rng = np.random.default_rng(seed)
    curve = ThroughputCurve.linear() if seed % 2 == 0 else ThroughputCurve.from_points(
        {"1.0": 5493, "0.5": 5265, "0.25": 3427, "0.1": 1723})
    problem, allocs = random_case(rng, 3, curve, latency)
    exact = np.array(evaluate(problem, allocs).accuracies)
    brute = brute_force(problem, allocs)
    assert np.allclose(exact, brute, atol=2e-3), (exact, brute)
    # the specialised evaluators agree with the general one
    end = np.array([c.options[0].end_accuracy for c in problem.cameras])
    work = np.array([c.options[0].gpu_seconds for c in problem.cameras])
    has = np.array([a.config is not None for a in allocs])
    inf = np.array([a.inference_share for a in allocs])
    tr = np.array([a.training_share for a in allocs])
    fast = FastEvaluator(problem).mean(inf, tr, end, work, has)
    batch = batch_mean(problem, inf[None], tr[None], end[None], work[None], has[None])[0]
    assert fast == pytest.approx(exact.mean(), abs=1e-12)
    assert batch == pytest.approx(exact.mean(), abs=1e-12)


def test_segments_and_completion_times() -> None:
    cam = CameraState("a", 0.5, (RetrainOption("a", "x", 0.9, 10.0),))
    p = Problem((cam,), 1, window=100.0)
    out = evaluate(p, [CameraAllocation("a", "x", 0.5, 0.5)], record=True)
    assert out.completion_times[0] == pytest.approx(20.0)
    # 20 s at 0.5, then 0.9 (inference share >= full share throughout)
    assert out.accuracies[0] == pytest.approx((0.5 * 20 + 0.9 * 80) / 100)
    assert out.segments[0].t1 == pytest.approx(20.0)


def test_fixed_latency_delays_completion_at_any_share() -> None:
    """Start-up and publishing take wall seconds whatever the share: completion = latency + work / rate."""
    cam = CameraState("a", 0.5, (RetrainOption("a", "x", 0.9, 10.0),))
    for share, latency in ((0.5, 4.0), (1.0, 4.0), (0.5, 30.0)):
        p = Problem((cam,), 1, window=100.0, job_latency=latency)
        out = evaluate(p, [CameraAllocation("a", "x", 0.25, share)])
        done = latency + 10.0 / share
        assert out.completion_times[0] == pytest.approx(done)
        assert out.accuracies[0] == pytest.approx((0.5 * done + 0.9 * (100 - done)) / 100)
    # a camera's own latency (a job already past its start-up) overrides the problem's
    own = Problem((CameraState("a", 0.5, cam.options, latency=0.0),), 1, window=100.0, job_latency=30.0)
    assert evaluate(own, [CameraAllocation("a", "x", 0.25, 0.5)]).completion_times[0] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="job_latency"):
        Problem((cam,), 1, job_latency=-1.0)


def test_inference_profile_defaults() -> None:
    prof = InferenceProfile()
    assert prof.scale(0.25) == 1.0
    assert prof.scale(0.125) == pytest.approx(0.78)  # stride 2
    assert prof.scale(0.25 / 20) == pytest.approx(0.04)
    assert prof.scale(0.25 / 25) == 0.0
    assert prof.scale(0.0) == 0.0
    s = np.array([0.0, 0.01, 0.05, 0.1, 0.125, 0.2, 0.3])
    assert np.allclose(prof.scale_array(s), [prof.scale(float(x)) for x in s])


def test_throughput_curve_measured_is_sublinear_and_monotone() -> None:
    c = ThroughputCurve.from_points({"1.0": 5493, "0.5": 5265, "0.25": 3427, "0.1": 1723})
    assert c(1.0) == pytest.approx(1.0)
    assert c(0.1) > 0.1 and c(0.25) > 0.25
    xs = np.linspace(0, 1, 101)
    ys = c.array(xs)
    assert np.all(np.diff(ys) >= -1e-12)
    # non-monotone measurements are clipped down, never above the larger share's value
    c2 = ThroughputCurve.from_points({"1.0": 6528, "0.5": 5348, "0.25": 6072, "0.1": 6909})
    assert c2(0.1) <= c2(0.5) <= c2(1.0) == pytest.approx(1.0)
    assert ThroughputCurve.linear()(0.3) == pytest.approx(0.3)
