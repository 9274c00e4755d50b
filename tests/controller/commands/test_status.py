"""`ekya status --json`: per camera, the serving version and the samples captured so far."""

from __future__ import annotations

import json
from pathlib import Path

from controller.cli import main
from controller.layout import DataLayout
from controller.state import CameraRecord, ControllerState


def test_status_json_reports_each_cameras_version_and_captured_samples(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("cameras:\n  - {name: cam0, source: {kind: synthetic}}\ndata: {dir: d}\n")
    state = ControllerState(t0=1.0, window_seconds=10.0,
                            cameras={"cam0": CameraRecord(serving_version=3, captured=120)})
    state.save(DataLayout(tmp_path / "d").state_file)
    assert main(["status", "--config", str(config), "--json"]) == 0
    cameras = json.loads(capsys.readouterr().out)["cameras"]
    assert cameras["cam0"]["version"] == 3 and cameras["cam0"]["captured"] == 120
