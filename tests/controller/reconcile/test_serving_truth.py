"""Triton's repository index is the truth about what is served: a publish is an intent saved before it
starts and confirmed after; a kill -9 at any point leaves a state the next step squares with Triton."""

from __future__ import annotations

import shutil
from pathlib import Path

from controller.state import ControllerState
from tests.controller.reconcile.fakes import Harness, make_harness


class KilledDuringPublish(BaseException):
    """Stands for kill -9: nothing after the raise point runs (the state on disk is what a kill leaves)."""


def _publish(h: Harness, camera: str, weights: bytes, root: Path) -> None:
    checkpoint = root / f"new-{camera}.pt"
    checkpoint.write_bytes(weights)
    h.scope.publisher.publish(camera, checkpoint, window=0, slot="retrained", accuracy=0.9, replaced_accuracy=0.5,
                              data_window=0, window_started=h.clock.now)


def _crash_snapshot(h: Harness, tmp_path: Path, *, after_load: bool) -> tuple[Path, int]:
    """Publish cam0's new weights, 'killing' the controller just before (after_load=False) or just after
    (after_load=True) Triton loads the new version: returns the state file the kill leaves, and the version."""
    serving = h.serving
    original = serving.publish
    snapshot = tmp_path / "killed-state.json"

    def killed(model: str, onnx_path: Path) -> int:
        if after_load:
            version = original(model, onnx_path)
        else:  # the version is on disk, the load never happened
            version = max(serving.on_disk[model]) + 1
            serving.on_disk[model].append(version)
        shutil.copyfile(h.scope.layout.state_file, snapshot)
        raise KilledDuringPublish(version)

    serving.publish = killed  # type: ignore[method-assign]
    try:
        _publish(h, "cam0", b"new weights", tmp_path)
    except KilledDuringPublish as killed_at:
        version = killed_at.args[0]
    serving.publish = original  # type: ignore[method-assign]
    return snapshot, version


def _restart(h: Harness, tmp_path: Path, snapshot: Path) -> Harness:
    """A new controller on the state the kill left, with the same Triton (its serving fake)."""
    state = ControllerState.load(snapshot)
    assert state is not None
    again = make_harness(tmp_path, state=state)
    again.serving.versions = dict(h.serving.versions)
    again.serving.on_disk = {name: list(v) for name, v in h.serving.on_disk.items()}
    return again


def test_the_state_on_disk_names_a_new_version_as_soon_as_it_is_published(tmp_path):
    h = make_harness(tmp_path)
    _publish(h, "cam0", b"new weights", tmp_path)
    on_disk = ControllerState.load(h.scope.layout.state_file)
    assert on_disk.cameras["cam0"].serving_version == 2 == h.serving.versions["cam0"]
    assert Path(on_disk.cameras["cam0"].serving_checkpoint).read_bytes() == b"new weights"
    assert on_disk.cameras["cam0"].publishing is None and on_disk.cameras["cam0"].serving_accuracy == 0.9


def test_the_intent_is_on_disk_before_the_load(tmp_path):
    h = make_harness(tmp_path)
    snapshot, _ = _crash_snapshot(h, tmp_path, after_load=True)
    intent = ControllerState.load(snapshot).cameras["cam0"].publishing
    assert intent is not None and Path(intent.checkpoint).read_bytes() == b"new weights"
    assert intent.accuracy == 0.9


def test_a_kill_after_the_load_is_confirmed_from_the_index(tmp_path):
    h = make_harness(tmp_path)
    snapshot, version = _crash_snapshot(h, tmp_path, after_load=True)
    assert ControllerState.load(snapshot).cameras["cam0"].serving_version == 1  # what the kill left
    again = _restart(h, tmp_path, snapshot)
    assert again.reconciler.truth.repair() == ["cam0"]
    cam = again.state.cameras["cam0"]
    assert cam.serving_version == version == 2 and cam.publishing is None and cam.serving_accuracy == 0.9
    assert Path(cam.serving_checkpoint) == again.scope.layout.checkpoint("cam0", 2)
    assert Path(cam.serving_checkpoint).read_bytes() == b"new weights"  # the next job trains from these
    assert not list(Path(cam.serving_checkpoint).parent.glob("pending-*"))
    assert ControllerState.load(again.scope.layout.state_file).cameras["cam0"].serving_version == 2
    assert again.reconciler.truth.repair() == []  # squared: a second look changes nothing


def test_a_kill_before_the_load_withdraws_the_intent_and_the_unloaded_version(tmp_path):
    h = make_harness(tmp_path)
    snapshot, version = _crash_snapshot(h, tmp_path, after_load=False)
    again = _restart(h, tmp_path, snapshot)
    assert again.serving.on_disk["cam0"] == [1, 2]
    assert again.reconciler.truth.repair() == ["cam0"]
    cam = again.state.cameras["cam0"]
    assert cam.serving_version == 1 and cam.publishing is None
    assert Path(cam.serving_checkpoint).read_bytes() == b"boot"
    # the version that never loaded is gone, so a Triton restart cannot bring it up unrecorded
    assert again.serving.on_disk["cam0"] == [1] and again.serving.retired[0][:2] == ("cam0", version)
    assert not list(Path(cam.serving_checkpoint).parent.glob("pending-*"))


def test_a_lost_state_is_rebuilt_from_the_index_and_the_kept_checkpoints(tmp_path):
    h = make_harness(tmp_path)
    _publish(h, "cam0", b"v2 weights", tmp_path)
    h.scope.layout.state_file.unlink()
    again = make_harness(tmp_path / "fresh")  # a fresh state on another dir, pointed at the same layout
    again.scope.layout = h.scope.layout
    again.scope.publisher.layout = h.scope.layout
    again.state.cameras["cam0"] = type(again.state.cameras["cam0"])()  # knows nothing
    again.serving.versions, again.serving.on_disk = dict(h.serving.versions), dict(h.serving.on_disk)
    again.reconciler.truth.repair()
    cam = again.state.cameras["cam0"]
    assert cam.serving_version == 2 and Path(cam.serving_checkpoint).read_bytes() == b"v2 weights"


def test_a_served_version_whose_weights_are_unknown_is_taken_out(tmp_path):
    h = make_harness(tmp_path)
    h.serving.versions["cam1"] = 5  # someone loaded a version this deployment never recorded
    h.serving.on_disk["cam1"] = [1, 5]
    h.reconciler.truth.repair()
    assert ("cam1", 5) in [(m, v) for m, v, _ in h.serving.retired]
    assert h.serving.versions["cam1"] == 1 and h.state.cameras["cam1"].serving_version == 1
    assert h.reconciler.truth.repair() == []


def test_nothing_changes_while_triton_cannot_be_asked(tmp_path):
    h = make_harness(tmp_path)
    snapshot, _ = _crash_snapshot(h, tmp_path, after_load=True)
    again = _restart(h, tmp_path, snapshot)
    again.serving.down = True
    assert again.reconciler.truth.repair() == []
    assert again.state.cameras["cam0"].publishing is not None  # kept until Triton answers
    again.enter_window(0)  # the step runs on
    again.serving.down = False
    again.enter_window(1)
    assert again.state.cameras["cam0"].serving_version == 2 and again.state.cameras["cam0"].publishing is None
