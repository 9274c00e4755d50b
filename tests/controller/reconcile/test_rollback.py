"""Rollbacks through the reconcile core (its in-memory fakes, real checkpoint files): asked for with a
queued request (`ekya rollback`), and automatic at a window's close when a newly published model does
worse on the window's held-out data than the model it replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.reconcile.records import RollbackRecord
from controller.rollback_requests import RollbackQueue, RollbackRequest
from controller.state import ControllerState
from tests.controller.reconcile.fakes import Harness, make_harness
from trainer.streams.base import WindowData

# the fakes' checkpoint files say what they are: b"boot" (v1), b"weights" (a finished job's model)
BOOT, RETRAINED = b"boot", b"weights"


class CheckpointAccuracy:
    """The Evaluator port: a kept checkpoint's accuracy, by its content; counts what it measured."""

    def __init__(self, by_content: dict[bytes, float]) -> None:
        self.by_content = by_content
        self.measured: list[Path] = []

    def __call__(self, checkpoint: Path, data: WindowData) -> float:
        assert len(data) > 0
        self.measured.append(Path(checkpoint))
        return self.by_content[Path(checkpoint).read_bytes()]


def _metric(harness: Harness, name: str, **labels: str) -> float:
    return harness.scope.metrics.registry.get_sample_value(name, labels) or 0.0


def _published_v2(tmp_path: Path, evaluate: CheckpointAccuracy | None = None, **overrides) -> Harness:
    """Window 1 running; cam0's job beat v1 and serves as v2."""
    harness = make_harness(tmp_path, **overrides)
    harness.scope.evaluate = evaluate or CheckpointAccuracy({BOOT: 0.7, RETRAINED: 0.4})
    harness.enter_window(0)
    for camera in ("cam0", "cam1"):
        harness.spool(camera, 0, chunk=0)
        harness.spool(camera, 0, chunk=1)
    harness.enter_window(1)
    harness.trainers.finish("cam0", 0.9)
    harness.clock.advance(3)
    harness.reconciler.reconcile()
    cam = harness.state.cameras["cam0"]
    assert cam.serving_version == 2 and cam.replaced_versions == [1] and cam.live_check_pending
    return harness


def _ask(harness: Harness, camera: str = "cam0", to: int | None = None) -> RollbackRecord:
    request = RollbackRequest.new(camera, to)
    path = RollbackQueue(harness.scope.layout).submit(request)
    harness.reconciler.apply_requests()  # the controller's ~1 s poll
    assert not path.exists(), "an applied request is removed"
    outcome = ControllerState.load(harness.scope.layout.state_file).rollback_for(request.id)
    assert outcome is not None, "the outcome is saved for `ekya rollback` to read"
    return outcome


def test_a_rollback_serves_the_replaced_checkpoint_as_a_new_version(tmp_path: Path) -> None:
    harness = _published_v2(tmp_path)
    outcome = _ask(harness)  # default target: the version v2 replaced

    assert (outcome.from_version, outcome.to_version, outcome.version, outcome.error) == (2, 1, 3, None)
    cam = harness.state.cameras["cam0"]
    assert harness.serving.published[-1] == ("cam0", 3)  # a new number: Triton's versions only grow
    assert cam.serving_version == 3 and cam.serving_origin == 1
    assert Path(cam.serving_checkpoint) == harness.scope.layout.checkpoint("cam0", 3)
    assert Path(cam.serving_checkpoint).read_bytes() == BOOT
    # measured on the last closed window's held-out data: what the running job is judged against
    assert cam.serving_accuracy == 0.7 and cam.accuracy_history[-1] == (0, 3, 0.7)
    assert not cam.live_check_pending  # a rollback is not checked against the model it undid
    entry = harness.state.record_for(1).cameras["cam0"]
    assert entry.rollback is not None and entry.rollback.version == 3 and entry.rollback.replaced_accuracy == 0.9
    assert "rolled back (manual) to v1's checkpoint, serving as v3" in entry.rollback.decision
    assert _metric(harness, "ekya_rollbacks_total", camera="cam0", reason="manual") == 1
    assert _metric(harness, "ekya_camera_serving_version", camera="cam0") == 3
    assert harness.state.swaps == 2 and harness.state.cameras["cam1"].serving_version == 1

    # nothing before v1 to go back to; an explicit version still can (and never reuses a number)
    refused = _ask(harness)
    assert refused.version is None and "replaced no recorded version" in refused.error
    again = _ask(harness, to=2)
    assert (again.to_version, again.version) == (2, 4) and harness.serving.published[-1] == ("cam0", 4)
    assert Path(harness.state.cameras["cam0"].serving_checkpoint).read_bytes() == RETRAINED
    assert harness.state.cameras["cam0"].replaced_versions == [3]  # undoing this goes back to v3 (= v1)


def test_bad_rollbacks_are_refused_clearly_and_change_nothing(tmp_path: Path) -> None:
    harness = _published_v2(tmp_path)
    layout = harness.scope.layout

    assert "version 2 is already serving" in _ask(harness, to=2).error
    missing = _ask(harness, to=9).error
    assert "version 9 not found" in missing and "versions whose checkpoints exist: 1, 2 (serving)" in missing
    assert "no camera named 'cam9'" in _ask(harness, camera="cam9").error
    harness.serving.fail_publish.add("cam0")
    failed = _ask(harness)
    assert failed.version is None and "rollback (manual) to v1 failed" in failed.error
    assert harness.state.failed_swaps == 1
    harness.serving.fail_publish.clear()
    layout.checkpoint("cam0", 1).unlink()  # pruned (the last K versions are kept)
    pruned = _ask(harness)
    assert "version 1 not found" in pruned.error and "(never published, or pruned)" in pruned.error

    cam = harness.state.cameras["cam0"]
    assert cam.serving_version == 2 and harness.serving.versions["cam0"] == 2
    assert harness.state.swaps == 1 and _metric(harness, "ekya_rollbacks_total", camera="cam0", reason="manual") == 0


def test_requests_queued_while_no_controller_runs_are_applied_at_the_next_start(tmp_path: Path) -> None:
    harness = _published_v2(tmp_path)
    queue = RollbackQueue(harness.scope.layout)
    harness.reconciler.shutdown()
    request = RollbackRequest.new("cam0", None)
    queue.submit(request)
    unreadable = harness.scope.layout.requests_dir / "rollback-garbled.json"
    unreadable.write_text("{not json")
    done = RollbackRequest.new("cam0", 1)  # applied just before a crash that left its file behind
    harness.state.record_rollback(RollbackRecord(id=done.id, camera="cam0", reason="manual", at=0.0, window=1))
    harness.scope.save()
    queue.submit(done)

    restarted = make_harness(tmp_path)  # the state from disk, a new controller
    restarted.scope.evaluate = CheckpointAccuracy({BOOT: 0.7, RETRAINED: 0.4})
    restarted.reconciler.reconcile()  # its first step

    outcome = restarted.state.rollback_for(request.id)
    assert outcome is not None and (outcome.to_version, outcome.version) == (1, 3)
    assert restarted.serving.published == [("cam0", 3)]  # the done one was not applied twice
    assert queue.pending() == [] and unreadable.with_suffix(".invalid").is_file()


@pytest.mark.parametrize(("new", "old", "auto", "rolls_back"), [
    (0.40, 0.70, True, True),  # worse by 0.30 > margin 0.05
    (0.68, 0.70, True, False),  # worse by 0.02: within the margin
    (0.80, 0.70, True, False),  # better
    (0.40, 0.70, False, False),  # rollback.auto off
])
def test_a_published_model_worse_on_live_data_is_rolled_back_at_the_close(
        tmp_path: Path, new: float, old: float, auto: bool, rolls_back: bool) -> None:
    evaluate = CheckpointAccuracy({BOOT: old, RETRAINED: 0.0})
    harness = _published_v2(tmp_path, evaluate, rollback={"auto": auto, "margin": 0.05})
    harness.serving.accuracy_of[("cam0", 2)] = new  # the served v2 on window 1's held-out data
    for camera in ("cam0", "cam1"):
        harness.spool(camera, 1, chunk=0)
        harness.spool(camera, 1, chunk=1)
    harness.enter_window(2)  # closes window 1

    state = harness.state
    cam = state.cameras["cam0"]
    # one extra evaluation, of the replaced checkpoint, for the camera that published only
    assert evaluate.measured == ([harness.scope.layout.checkpoint("cam0", 1)] if auto else [])
    assert not cam.live_check_pending
    entry = state.record_for(1).cameras["cam0"]
    if rolls_back:
        assert cam.serving_version == 3 and cam.serving_origin == 1 and harness.serving.published[-1] == ("cam0", 3)
        assert Path(cam.serving_checkpoint).read_bytes() == BOOT
        assert entry.rollback is not None and (entry.rollback.accuracy, entry.rollback.replaced_accuracy) == (old, new)
        assert "v2 scored 0.400 on window 1's held-out data" in entry.rollback.decision
        assert entry.serving_accuracy_on_new_data == old and (1, 3, old) in cam.accuracy_history
        assert state.rollbacks[-1].reason == "auto" and (state.rollbacks[-1].from_version, state.rollbacks[-1].to_version) == (2, 1)
        assert _metric(harness, "ekya_rollbacks_total", camera="cam0", reason="auto") == 1
    else:
        assert cam.serving_version == 2 and entry.rollback is None and not state.rollbacks
        assert entry.serving_accuracy_on_new_data == new
        assert _metric(harness, "ekya_rollbacks_total", camera="cam0", reason="auto") == 0

    # checked once: the next close, with nothing newly published, measures nothing extra
    measured = len(evaluate.measured)
    for camera in ("cam0", "cam1"):
        harness.spool(camera, 2, chunk=0)
    harness.enter_window(3)
    assert len(evaluate.measured) == measured


def test_a_pruned_predecessor_is_not_checked_against_and_the_close_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    evaluate = CheckpointAccuracy({BOOT: 0.9, RETRAINED: 0.0})
    harness = _published_v2(tmp_path, evaluate)
    harness.serving.accuracy_of[("cam0", 2)] = 0.3
    harness.scope.layout.checkpoint("cam0", 1).unlink()  # pruned (the last K versions are kept)
    for camera in ("cam0", "cam1"):
        harness.spool(camera, 1, chunk=0)
    harness.enter_window(2)

    assert harness.state.cameras["cam0"].serving_version == 2 and not evaluate.measured
    assert "v1's checkpoint is gone (pruned): v2 is not checked against it" in caplog.text
    assert (harness.scope.layout.window_dir(1, "cam0") / "test.npz").is_file()  # its window closed as usual
    assert harness.state.record_for(1).cameras["cam0"].serving_accuracy_on_new_data == 0.3
