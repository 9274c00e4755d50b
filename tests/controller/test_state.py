"""controller/state.py: the state file keeps its last good copy; a corrupt one is reported with its path and
recovered from that copy; with both corrupt, `ekya run` and `ekya status` say so and how to start afresh,
without a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from controller.state import CameraRecord, ControllerState, StateFileCorrupt, previous_copy


def _state(window: int) -> ControllerState:
    return ControllerState(t0=1000.0, window_seconds=30.0, window=window, closed=window - 1,
                           cameras={"cam0": CameraRecord(serving_version=window + 1)})


CORRUPTIONS = {
    "truncated": lambda text: text[: len(text) // 2],
    "garbage": lambda text: "\x00\x13 not json at all",
    "empty": lambda text: "",
    "wrong_schema": lambda text: '{"t0": "yesterday", "window_seconds": 30}',
}


@pytest.fixture
def saved_twice(tmp_path: Path) -> Path:
    path = tmp_path / "state.json"
    _state(3).save(path)
    _state(4).save(path)
    return path


def test_each_save_keeps_the_replaced_file_as_the_last_good_copy(saved_twice: Path) -> None:
    assert ControllerState.load(saved_twice).window == 4
    assert ControllerState.load(previous_copy(saved_twice)).window == 3
    assert sorted(p.name for p in saved_twice.parent.iterdir()) == ["state.json", "state.json.prev"]  # no temp files


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_corrupt_state_file_is_reported_and_recovered_from_its_copy(
        saved_twice: Path, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    saved_twice.write_text(CORRUPTIONS[kind](saved_twice.read_text()))
    with caplog.at_level(logging.ERROR, logger="controller"):
        state = ControllerState.load(saved_twice)
    assert state is not None and state.window == 3 and state.cameras["cam0"].serving_version == 4
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and str(saved_twice) in errors[0] and str(previous_copy(saved_twice)) in errors[0]
    assert {"truncated": "json", "garbage": "json", "empty": "empty", "wrong_schema": "t0"}[kind] in errors[0].lower()

    # the next save does not rotate the corrupt file over the good copy
    state.window = 5
    state.save(saved_twice)
    assert ControllerState.load(saved_twice).window == 5
    assert ControllerState.load(previous_copy(saved_twice)).window == 3


def test_both_corrupt_is_a_clear_error_unless_the_state_can_be_rebuilt(saved_twice: Path) -> None:
    saved_twice.write_text("{")
    previous_copy(saved_twice).write_text("")
    with pytest.raises(StateFileCorrupt) as error:
        ControllerState.load(saved_twice)
    message = str(error.value)
    assert str(saved_twice) in message and str(previous_copy(saved_twice)) in message
    assert "it is empty" in message and f"mv {saved_twice} " in message
    with pytest.raises(StateFileCorrupt):
        ControllerState.load(saved_twice, rebuild=lambda: None)  # the hook found no usable state either
    assert ControllerState.load(saved_twice, rebuild=lambda: _state(7)).window == 7


def _deployment(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    config = tmp_path / "deployment.yaml"
    config.write_text(yaml.safe_dump({"cameras": [{"name": "cam0", "source": {"kind": "synthetic"}}],
                                      "data": {"dir": str(data)}, "metrics": {"port": 0}}))
    data.mkdir()
    return config, data / "state.json"


def test_ekya_status_shows_the_recovered_state_and_names_the_corrupt_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, path = _deployment(tmp_path)
    _state(3).save(path)
    _state(4).save(path)
    path.write_text("{")
    assert main(["status", "--config", str(config)]) == 0
    assert "window 3 " in capsys.readouterr().out


def test_two_corrupt_state_files_status_says_the_way_out_and_run_rebuilds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, path = _deployment(tmp_path)
    path.write_text('{"window": ')
    previous_copy(path).write_bytes(b"\xff\xfe")

    assert main(["status", "--config", str(config)]) == 4
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and str(previous_copy(path)) in err and "mv " in err

    assert path.read_text() == '{"window": '  # status only reads: left as it was, for the operator

    # `ekya run` recovers: both files moved aside (kept), a fresh state that Triton's index fills in
    from controller.config import load_config
    from controller.runtime.deployment import Deployment

    rebuilt = ControllerState.load(path, rebuild=Deployment(load_config(config)).rebuild_state)
    assert rebuilt is not None and rebuilt.window == -1 and set(rebuilt.cameras) == {"cam0"}
    assert not path.exists() and not previous_copy(path).exists()
    aside = sorted(p.name for p in path.parent.glob("state.json*.bad-*"))
    assert len(aside) == 2 and [p.read_bytes() for p in sorted(path.parent.glob("state.json*.bad-*"))] == [
        b'{"window": ', b"\xff\xfe"]
