"""`ekya rollback`: bad input refused before anything is queued, a request queued (and said so) when no
controller runs, and the running controller's answer waited for."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from controller.rollback_requests import RollbackQueue
from controller.runtime.lock import DataDirLock
from controller.state import ControllerState
from tests.controller.reconcile.fakes import CONFIG, Harness, make_harness


def _deployment(tmp_path: Path) -> tuple[Harness, Path]:
    """cam0 serves v2 (a finished job's model), having replaced v1; the config file names the data dir."""
    harness = make_harness(tmp_path)
    harness.enter_window(0)
    for camera in ("cam0", "cam1"):
        harness.spool(camera, 0, chunk=0)
    harness.enter_window(1)
    harness.trainers.finish("cam0", 0.9)
    harness.reconciler.reconcile()
    assert harness.state.cameras["cam0"].serving_version == 2
    config = tmp_path / "deployment.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "data": {"dir": str(tmp_path / "data")}}))
    return harness, config


def _rollback(config: Path, *extra: str) -> int:
    return main(["rollback", "--config", str(config), *extra])


def test_bad_input_is_refused_and_nothing_is_queued(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    harness, config = _deployment(tmp_path)
    cases = [
        (["--camera", "cam9"], "no camera named 'cam9' in the config; cameras: cam0, cam1"),
        (["--camera", "cam0", "--to", "7"], "version 7 not found"),
        (["--camera", "cam0", "--to", "2"], "version 2 is already serving"),
        (["--camera", "cam1"], "replaced no recorded version; name one with --to (versions whose checkpoints "
                               "exist: 1 (serving))"),
    ]
    for args, message in cases:
        assert _rollback(config, *args) == 2
        assert message in capsys.readouterr().err
    assert RollbackQueue(harness.scope.layout).pending() == []

    bare = tmp_path / "fresh.yaml"
    bare.write_text(yaml.safe_dump({**CONFIG, "data": {"dir": str(tmp_path / "fresh")}}))
    assert _rollback(bare, "--camera", "cam0") == 2
    assert "no controller state at" in capsys.readouterr().err


def test_without_a_running_controller_the_request_is_queued(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    harness, config = _deployment(tmp_path)
    harness.reconciler.shutdown()

    assert _rollback(config, "--camera", "cam0") == 3
    out = capsys.readouterr().out
    assert "no controller is running this deployment" in out and "from v2 to v1 is queued" in out
    [(path, request)] = RollbackQueue(harness.scope.layout).pending()
    assert str(path) in out and (request.camera, request.to_version) == ("cam0", 1)
    assert ControllerState.load(harness.scope.layout.state_file).cameras["cam0"].serving_version == 2  # untouched


def test_a_running_controller_applies_it_and_the_command_prints_the_new_version(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    harness, config = _deployment(tmp_path)
    lock = DataDirLock(harness.scope.layout.root)
    lock.acquire()  # this process is the controller
    stop = threading.Event()

    def controller() -> None:
        while not stop.wait(0.05):
            harness.reconciler.apply_requests()

    thread = threading.Thread(target=controller, daemon=True)
    thread.start()
    try:
        assert _rollback(config, "--camera", "cam0", "--wait", "20") == 0
        out = capsys.readouterr().out
        assert "rolled back from v2 to v1's checkpoint, now serving as version 3" in out
        harness.serving.fail_publish.add("cam0")  # the controller's own refusal reaches the user
        assert _rollback(config, "--camera", "cam0", "--to", "2", "--wait", "20") == 1
        assert "the rollback was not done: rollback (manual) to v2 failed: cam0: load failed" in capsys.readouterr().err
    finally:
        stop.set()
        thread.join(timeout=10)
        lock.release()
    assert harness.state.cameras["cam0"].serving_version == 3


def test_two_corrupt_state_files_are_a_clear_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from controller.state import previous_copy

    harness, config = _deployment(tmp_path)
    state_file = harness.scope.layout.state_file
    state_file.write_text('{"window": ')
    previous_copy(state_file).write_text("")
    assert _rollback(config, "--camera", "cam0") == 4
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(state_file) in err and str(previous_copy(state_file)) in err
    assert RollbackQueue(harness.scope.layout).pending() == []
