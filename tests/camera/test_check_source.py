"""`ekya check-source`: a camera's source opened as the camera would, reported for a user; its --json
last line; clear errors and exit codes for a missing file, a file that is not a video, a stream that
never answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from tests.repo import REPO_ROOT
from tests.sources.video_helpers import scene_video, silent_server
from trainer.streams.scene import SceneSpec


def write_config(path: Path, source: dict) -> Path:
    path.write_text(yaml.safe_dump({"cameras": [{"name": "gate", "source": source}],
                                    "edge_model": {"input_size": 16}, "window_seconds": 10}))
    return path


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_video_file_reported_as_json(tmp_path: Path) -> None:
    scene_video(tmp_path / "gate.mp4", SceneSpec(seconds=2.5, fps=10, seed=0))
    config = write_config(tmp_path / "c.yaml", {"kind": "video", "url": "gate.mp4"})  # relative to the config
    done = subprocess.run([sys.executable, "-m", "controller.cli", "check-source", "--config", str(config),
                           "--name", "gate", "--seconds", "2", "--json"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = last_json(done.stdout)
    assert set(report) == {"frames", "fps", "width", "height", "crops", "errors"}
    assert 15 <= report["frames"] <= 21 and abs(report["fps"] - 10) < 1.5  # 2 s played in real time
    assert (report["width"], report["height"]) == (320, 240) and report["errors"] == []
    assert report["crops"] > 0.5  # the scene's 3 objects, found once the background is learned


def test_bad_inputs_exit_non_zero_with_a_clear_message(tmp_path: Path, capsys) -> None:
    missing = write_config(tmp_path / "missing.yaml", {"kind": "video", "url": "nowhere.mp4"})
    assert main(["check-source", "--config", str(missing), "--name", "gate", "--json"]) == 2
    assert last_json(capsys.readouterr().out)["errors"] == [
        f"camera 'gate': video file not found: {tmp_path / 'nowhere.mp4'}"]
    (tmp_path / "text.mp4").write_text("hello\n" * 100)
    text = write_config(tmp_path / "text.yaml", {"kind": "video", "url": "text.mp4"})
    assert main(["check-source", "--config", str(text), "--name", "gate", "--json"]) == 2
    assert "is not a video PyAV can read" in last_json(capsys.readouterr().out)["errors"][0]
    assert main(["check-source", "--config", str(text), "--name", "nobody"]) == 2
    assert "no camera named 'nobody'" in capsys.readouterr().err
    with silent_server() as url:
        never = write_config(tmp_path / "never.yaml", {"kind": "video", "url": url, "open_timeout_s": 0.5})
        assert main(["check-source", "--config", str(never), "--name", "gate", "--seconds", "1.5", "--json"]) == 1
    report = last_json(capsys.readouterr().out)
    assert report["frames"] == 0
    assert report["errors"][-1] == f"no frames from {url} within 1.5s (no answer within 0.5s (open_timeout_s))"
