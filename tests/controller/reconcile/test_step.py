"""The reconcile step with in-memory fakes of serving, trainers, the micro-profiler and the cameras:
every decision of a window, in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.state import ControllerState
from tests.controller.reconcile.fakes import WINDOW_S, FakeTrainers, Harness, make_harness


def _metric(harness: Harness, name: str, **labels: str) -> float:
    return harness.scope.metrics.registry.get_sample_value(name, labels) or 0.0


def _running_window_1(tmp_path: Path, scheduler: str = "thief", **overrides) -> Harness:
    """Window 0 streamed (both cameras spooled crops), then window 1 planned on its data."""
    harness = make_harness(tmp_path, scheduler, **overrides)
    harness.enter_window(0)
    for camera in ("cam0", "cam1"):
        harness.spool(camera, 0, chunk=0)
        harness.spool(camera, 0, chunk=1)
    harness.enter_window(1)
    return harness


def test_a_window_closes_and_the_next_is_planned(tmp_path: Path) -> None:
    harness = make_harness(tmp_path)
    assert harness.enter_window(0) > 0  # nothing to train on yet: it waits for the next boundary
    assert harness.state.window == 0 and not harness.trainers.launched
    for camera in ("cam0", "cam1"):
        harness.spool(camera, 0, chunk=0)
        harness.spool(camera, 0, chunk=1)
    harness.serving.accuracy_of[("cam0", 1)] = 0.55
    requeue = harness.enter_window(1)

    state = harness.state
    assert state.closed == 0 and state.window == 1
    # closed: golden-labelled, held out, measured
    assert harness.serving.labelled == 160
    assert (harness.scope.layout.window_dir(0, "cam0") / "train.npz").is_file()
    assert state.cameras["cam0"].serving_accuracy == 0.5  # the profiler measured the start accuracy
    record = state.record_for(0)
    assert record is not None and record.cameras["cam0"].serving_accuracy_on_new_data == 0.55
    assert record.cameras["cam0"].golden_label_accuracy == 1.0
    # planned: profiled, a job per camera at its training share, strides told to the cameras
    assert sorted(harness.profiler.calls) == ["cam0", "cam1"]
    planned = state.record_for(1)
    assert planned is not None and planned.scheduler == "thief"
    launched = {r.camera: r for r in harness.trainers.launched}
    assert launched, planned.cameras
    for camera, job in launched.items():
        assert job.share == pytest.approx(planned.cameras[camera].training_share) and job.share > 0
        assert job.config == planned.cameras[camera].config and job.predicted_accuracy is not None
    total = sum(c.inference_share + c.training_share for c in planned.cameras.values())
    assert total == pytest.approx(1.0)
    for camera, entry in planned.cameras.items():
        assert harness.cameras.directives[camera]["stride"] == entry.stride
    assert requeue == pytest.approx(1.0)  # trainers run: it looks again in a second
    assert ControllerState.load(harness.scope.layout.state_file).window == 1  # persisted


def test_a_finished_job_that_beats_the_serving_model_is_published(tmp_path: Path) -> None:
    harness = _running_window_1(tmp_path)
    harness.trainers.finish("cam0", 0.9)
    harness.clock.advance(3)
    harness.reconciler.reconcile()

    cam = harness.state.cameras["cam0"]
    assert ("cam0", 2) in harness.serving.published and cam.serving_version == 2
    assert cam.serving_accuracy == 0.9
    assert Path(cam.serving_checkpoint) == harness.scope.layout.checkpoint("cam0", 2)
    assert Path(cam.serving_checkpoint).read_bytes() == b"weights"
    entry = harness.state.record_for(1).cameras["cam0"]
    assert entry.job is not None and entry.job.status == "ok" and entry.job.retrained_accuracy == 0.9
    assert entry.retrained is not None and entry.retrained.version == 2 and entry.retrained.replaced_accuracy == 0.5
    assert harness.state.swaps == 1 and _metric(harness, "ekya_model_swaps_total", camera="cam0") == 1
    assert harness.state.job_latency_seconds is not None
    assert not harness.state.jobs.get(entry.job.job_id)


def test_a_finished_job_that_does_not_beat_it_is_kept_out_with_its_reason(tmp_path: Path) -> None:
    harness = _running_window_1(tmp_path)
    harness.trainers.finish("cam1", 0.3)
    harness.reconciler.reconcile()

    assert harness.state.cameras["cam1"].serving_version == 1
    assert not [p for p in harness.serving.published if p[0] == "cam1" and p[1] > 1]
    entry = harness.state.record_for(1).cameras["cam1"]
    assert entry.retrained is not None and entry.retrained.version is None
    assert entry.retrained.decision == "kept serving model (0.300 <= 0.500 on held-out data)"
    assert harness.state.swaps == 0


def test_a_failed_publish_keeps_the_old_version_serving(tmp_path: Path) -> None:
    harness = _running_window_1(tmp_path)
    harness.serving.fail_publish.add("cam0")
    harness.trainers.finish("cam0", 0.9)
    harness.reconciler.reconcile()

    assert harness.state.cameras["cam0"].serving_version == 1
    assert harness.state.failed_swaps == 1 and harness.state.swaps == 0
    assert _metric(harness, "ekya_model_swap_failures_total", camera="cam0") == 1
    assert "publish failed: cam0: load failed" in harness.state.record_for(1).cameras["cam0"].retrained.decision


def test_a_failed_trainer_is_counted_with_its_reason(tmp_path: Path) -> None:
    harness = _running_window_1(tmp_path)
    harness.trainers.finish("cam0", None, status="failed")
    harness.reconciler.reconcile()

    assert harness.state.trainer_failures == 1
    assert _metric(harness, "ekya_trainer_failures_total", camera="cam0", reason="crash") == 1
    assert "failed: boom" in harness.state.record_for(1).cameras["cam0"].decision


def test_a_job_still_running_at_the_windows_end_is_stopped_and_its_best_checkpoint_judged(tmp_path: Path) -> None:
    harness = _running_window_1(tmp_path)
    harness.trainers.stopped_accuracy = {"cam0": 0.8, "cam1": 0.4}
    for camera in ("cam0", "cam1"):
        harness.spool(camera, 1)
    harness.enter_window(2)

    state = harness.state
    assert state.closed == 1 and state.window == 2
    first = state.record_for(1)
    assert first.cameras["cam0"].job.status == "stopped" and first.cameras["cam0"].retrained.version == 2
    assert first.cameras["cam1"].job.status == "stopped" and first.cameras["cam1"].retrained.version is None
    assert state.cameras["cam0"].serving_version == 2
    # window 2's jobs start from the newly served model
    assert {r.window for r in harness.trainers.launched} == {1, 2}


def test_replanning_on_completion_gives_the_freed_share_away(tmp_path: Path) -> None:
    harness = _running_window_1(tmp_path)
    before = {c: r.training_share for c, r in harness.state.cameras.items()}
    assert before["cam0"] > 0
    harness.trainers.finish("cam0", 0.9)
    harness.clock.advance(2)
    harness.reconciler.reconcile()

    cams = harness.state.cameras
    assert cams["cam0"].training_share == 0
    assert sum(c.inference_share + c.training_share for c in cams.values()) == pytest.approx(1.0)
    assert any("re-planned" in e for e in harness.state.record_for(1).events)


def test_a_static_scheduler_splits_a_finished_share_equally(tmp_path: Path) -> None:
    harness = _running_window_1(tmp_path, "fair")
    jobs = {r.camera: r for r in harness.trainers.launched}
    assert set(jobs) == {"cam0", "cam1"}  # fair retrains every camera with its fixed config
    freed = jobs["cam0"].share
    cam1_share, inference = jobs["cam1"].share, {c: r.inference_share for c, r in harness.state.cameras.items()}
    harness.trainers.finish("cam0", 0.9)
    harness.reconciler.reconcile()

    bonus = freed / 3  # one running trainer and two inference jobs
    assert harness.trainers.shares[jobs["cam1"].job_id] == pytest.approx(cam1_share + bonus)
    for camera, share in inference.items():
        assert harness.state.cameras[camera].inference_share == pytest.approx(share + bonus)


def test_noretrain_starts_no_jobs(tmp_path: Path) -> None:
    harness = _running_window_1(tmp_path, "noretrain")
    assert not harness.trainers.launched and not harness.profiler.calls
    assert harness.state.record_for(1).cameras["cam0"].inference_share > 0


def test_a_winning_trial_model_is_served_at_the_plan(tmp_path: Path) -> None:
    harness = make_harness(tmp_path)
    harness.profiler.trial_accuracy = {"cam0": 0.9, "cam1": 0.51}  # cam1's trial is within the margin
    harness.enter_window(0)
    for camera in ("cam0", "cam1"):
        harness.spool(camera, 0)
    harness.enter_window(1)

    entry = harness.state.record_for(1).cameras
    assert entry["cam0"].trial is not None and entry["cam0"].trial.version == 2
    assert entry["cam0"].trial.trained_as == "head-h64" and entry["cam1"].trial is None
    assert harness.state.cameras["cam0"].serving_version == 2
    assert harness.state.cameras["cam1"].serving_version == 1


def test_a_restart_kills_orphan_trainers_and_resumes_at_the_next_boundary(tmp_path: Path) -> None:
    first = _running_window_1(tmp_path)
    orphans = set(first.state.jobs)
    assert orphans  # the crash leaves trainers running and recorded

    trainers = FakeTrainers(tmp_path / "jobs")
    second = make_harness(tmp_path, trainers=trainers)
    assert set(trainers.killed) == orphans and not second.state.jobs
    assert second.state.window == 1 and second.state.cameras["cam0"].serving_version == 1
    second.enter_window(1)  # the window it crashed in is not planned twice
    assert not trainers.launched and len(second.state.history) == len(first.state.history)
    for camera in ("cam0", "cam1"):
        second.spool(camera, 1)
    second.enter_window(2)
    assert second.state.closed == 1 and second.state.window == 2
    assert {r.window for r in trainers.launched} == {2}


def test_a_late_step_coalesces_the_windows_it_missed(tmp_path: Path) -> None:
    harness = _running_window_1(tmp_path)
    harness.clock.now = harness.state.t0 + 3 * WINDOW_S + 1
    harness.reconciler.reconcile()
    assert harness.state.window == 3 and harness.state.closed == 2
    assert [r.window for r in harness.state.history] == [0, 1, 3]


def _cheapest_retraining(problem, parameters):
    """A new scheduler, whole: a quarter of the compute to inference, the rest to each camera's cheapest
    retraining option."""
    import numpy as np

    from controller.planner.common import build_plan

    n = len(problem.cameras)
    configs = [min(c.options, key=lambda o: o.gpu_seconds).config if c.options else None for c in problem.cameras]
    inference = np.full(n, 0.25 * problem.gpus / n)
    training = np.array([0.75 * problem.gpus / n if cfg else 0.0 for cfg in configs])
    return build_plan(problem, "cheapest-retraining", inference, training, configs)


def test_a_newly_registered_scheduler_runs_the_window(tmp_path: Path) -> None:
    from controller.planner.schedulers import Scheduler, register_scheduler

    register_scheduler(Scheduler("cheapest-retraining", _cheapest_retraining, profiles=True))
    harness = _running_window_1(tmp_path, "cheapest-retraining")
    record = harness.state.record_for(1)
    assert record.scheduler == "cheapest-retraining" and sorted(harness.profiler.calls) == ["cam0", "cam1"]
    head_only = next(c.name for c in harness.scope.config.retraining_configs if c.layers == "head")
    assert {r.config for r in harness.trainers.launched} == {head_only}  # the profiler's cheaper option
    harness.trainers.finish("cam0", 0.9)
    harness.reconciler.reconcile()
    assert not any("re-planned" in e for e in record.events)  # it does not re-plan: the share is split
    assert harness.state.cameras["cam1"].inference_share > record.cameras["cam1"].inference_share
