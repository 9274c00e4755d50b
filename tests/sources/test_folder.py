"""The folder/manifest source end to end: a manifest of PNG crops (rendered by the synthetic generator,
with labels and track ids) replayed on the window clock, `ekya bootstrap --config` training the initial
models on its history, the camera client streaming it through a real Triton and scoring accuracy, and a
one-window `ekya run` with a folder camera."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from sources import SourceContext, SourceError, source_kind
from sources.folder import FolderSource
from tests.triton_helpers import embedded_triton_section
from trainer.streams.base import CLASSES
from trainer.streams.folder import write_manifest
from trainer.streams.synthetic import CameraStreamSpec, generate_window

WINDOW_S = 8.0
FPS = 4.0
MANIFEST_WINDOWS = 4  # window 0 is the bootstrap history, 1-3 are replayed (and looped)
SPEC = CameraStreamSpec(name="street", seed=3, crop_size=32, fps=FPS, window_seconds=WINDOW_S,
                        objects_per_frame=4, drift_magnitude=0.3)
CONFIG = {
    "cameras": [{"name": "cam0", "source": {"kind": "folder", "manifest": "frames/manifest.csv",
                                            "camera": "street", "fps": FPS}}],
    "edge_model": {"family": "resnet18", "input_size": 32, "hidden": 64},
    "golden_model": {"family": "resnet34", "input_size": 32, "hidden": 64},
    "window_seconds": WINDOW_S,
    "resources": {"mode": "cpu", "cores": 2},
    "scheduler": {"name": "thief"},
    "retraining_configs": [{"layers": "head", "hidden": 64, "subsample": 1.0, "epochs": 1}],
    "microprofiler": {"subsample": 0.5, "epochs": 1},
    "label_sampling_rate": 0.5,
    "metrics": {"port": 0},
    "directives": {"port": 0},
    "data": {"dir": "data"},
    "bootstrap": {"history_windows": 1, "edge_crops": 200, "edge_epochs": 5, "golden_crops": 200,
                  "golden_epochs": 1},
}


def render_manifest(directory: Path, windows: int = MANIFEST_WINDOWS, *, unlabelled_every: int = 7,
                    track_ids: bool = True, labels_at_most: int | None = None) -> Path:
    """The generator's crops as PNG files plus a manifest: labels (every `unlabelled_every`-th left
    empty, and all after the first `labels_at_most`), track ids and timestamps on the generator's clock
    (window w: floor(t / WINDOW_S) == w)."""
    rows = []
    for window in range(windows):
        data = generate_window(SPEC, window)
        for i in range(len(data)):
            path = directory / "crops" / f"w{window}-{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.images[i]).save(path)
            rows.append({"path": str(path.relative_to(directory)), "camera": "street",
                         "timestamp": float(data.timestamps[i]),
                         "label": "" if len(rows) % unlabelled_every == 0
                         or (labels_at_most is not None and len(rows) >= labels_at_most) else CLASSES[data.labels[i]],
                         "track_id": int(data.track_ids[i]) if track_ids else ""})
    return write_manifest(directory / "manifest.csv", rows)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder-deployment")
    render_manifest(root / "frames")
    config = root / "deployment.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "triton": embedded_triton_section()}))
    return config


@pytest.fixture(scope="module")
def bootstrapped(deployment: Path) -> dict:
    """`ekya bootstrap --config` on the folder deployment, as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "controller.cli", "bootstrap", "--config", str(deployment),
                             "--json"], capture_output=True, text=True, timeout=600, cwd=deployment.parent)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def replay(manifest: Path, history: int = 1) -> tuple[FolderSource, SourceContext]:
    return (FolderSource(kind="folder", manifest=manifest, camera="street", fps=FPS),
            SourceContext(camera="cam0", crop_size=32, window_seconds=WINDOW_S, history_windows=history))


# ---- the replay ------------------------------------------------------------------------------------------
def test_windows_replay_the_manifest_after_its_history_and_loop(deployment: Path) -> None:
    source, ctx = replay(deployment.parent / "frames" / "manifest.csv")
    frames = source_kind("folder").open(source, ctx)
    assert frames.frames_per_window(WINDOW_S) == 32
    for window, replayed in [(-1, 0), (0, 1), (2, 3), (3, 1), (7, 2)]:
        data = frames.window(window, WINDOW_S)
        expected = generate_window(SPEC, replayed)
        assert data.meta["manifest_window"] == replayed and len(data) == len(expected)
        assert data.track_ids.tolist() == expected.track_ids.tolist()
        # each crop at its own frame of the window, on the deployment's frame clock
        assert (data.frame_index - window * 32).tolist() == (expected.frame_index - replayed * 32).tolist()
        assert np.abs(data.images.astype(int) - expected.images).max() <= 1  # PNG round trip
    assert len(frames.window(-2, WINDOW_S)) == 0  # before the manifest starts


def test_a_short_manifest_replays_all_of_it(tmp_path: Path) -> None:
    manifest = render_manifest(tmp_path, windows=1)
    source, ctx = replay(manifest)
    frames = source_kind("folder").open(source, ctx)
    assert [frames.window(w, WINDOW_S).meta["manifest_window"] for w in (-1, 0, 1)] == [0, 0, 0]


def test_profile_from_tracks_and_clear_errors(tmp_path: Path, deployment: Path) -> None:
    folder = source_kind("folder")
    source, ctx = replay(deployment.parent / "frames" / "manifest.csv")
    profile = dict(folder.stride_profile(source, ctx))
    assert profile[1] == 1.0 and 0.3 < profile[4] < 1.0  # objects persist over frames: skipping costs less
    untracked = render_manifest(tmp_path / "untracked", windows=2, track_ids=False)
    assert folder.stride_profile(*replay(untracked)) is None  # the original system's profile is used
    unlabelled = render_manifest(tmp_path / "unlabelled", windows=2, unlabelled_every=1)
    assert not folder.has_ground_truth(*replay(unlabelled))
    with pytest.raises(SourceError, match="no labelled crops .* bootstrap history"):
        folder.bootstrap_windows(*replay(unlabelled), [-1], None)
    with pytest.raises(SourceError, match="no crops of camera 'avenue'.*street.*source.camera"):
        folder.open(source.model_copy(update={"camera": "avenue"}), ctx)
    with pytest.raises(SourceError, match="manifest not found"):
        folder.open(source.model_copy(update={"manifest": tmp_path / "nope.csv"}), ctx)


@pytest.mark.parametrize(("labels_at_most", "message"), [
    (0, "camera 'cam0': its folder source has no labels to bootstrap from"),
    (6, "the bootstrap history of cam0 has 5 labelled crops; at least 20 are needed"),
])
def test_bootstrap_refuses_too_few_labelled_crops(tmp_path: Path, labels_at_most: int, message: str) -> None:
    render_manifest(tmp_path / "frames", windows=2, labels_at_most=labels_at_most)
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump(CONFIG))
    result = subprocess.run([sys.executable, "-m", "controller.cli", "bootstrap", "--config",
                             str(tmp_path / "deployment.yaml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr, result.stderr


# ---- bootstrap, camera, controller -------------------------------------------------------------------------
@pytest.mark.slow
def test_bootstrap_trains_edge_and_golden_models_on_the_history(deployment: Path, bootstrapped: dict) -> None:
    assert not bootstrapped["reused"]
    directory = Path(bootstrapped["directory"])
    assert directory.parent == deployment.parent / "data" / "models"
    assert Path(bootstrapped["edge_models"]["cam0"]).is_file() and Path(bootstrapped["golden_model"]).is_file()
    assert set(bootstrapped["accuracy"]) == {"edge:shared", "golden"}
    cached = json.loads((directory / "manifest.json").read_text())["cameras"][0]
    assert cached["manifest"] == str(deployment.parent / "frames" / "manifest.csv")  # resolved, and keyed


@pytest.mark.slow
def test_camera_streams_a_folder_window_through_triton(deployment: Path, bootstrapped: dict, tmp_path: Path,
                                                       triton_runtime) -> None:
    from camera.client import CameraClient
    from camera.directives import HttpDirectiveWatcher
    from camera.settings import load_camera_settings
    from controller.triton.spec import ModelSpec
    from protocol.camera_results import CameraResults
    from protocol.directives import CameraDirective
    from tests.camera.test_client import directive_endpoint, publish
    from tests.triton_helpers import running_server
    from trainer.export import export_onnx
    from trainer.models import load_model

    settings = load_camera_settings(deployment, "cam0")
    frames = source_kind(settings.source.kind).open(settings.source, settings.context)
    onnx = tmp_path / "cam0.onnx"
    export_onnx(load_model(bootstrapped["edge_models"]["cam0"]), onnx, 32)
    results = CameraResults(tmp_path / "results")
    with (running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (_, client, serving),
          directive_endpoint(("cam0",)) as (channel, directives)):
        serving.deploy(ModelSpec(name="cam0", input_dims=(3, 32, 32)), onnx)
        publish(channel, CameraDirective(t0=time.time() + 0.5, window_seconds=WINDOW_S), "cam0")
        camera = CameraClient("cam0", frames, client.url, HttpDirectiveWatcher(directives.url, "cam0", interval_s=0.2),
                              results, request_timeout_s=10)
        (stats,) = camera.run(threading.Event(), max_windows=1)
    assert stats.frames == 32 and stats.failed_requests == 0 and stats.requests > 0
    assert dict(stats.versions) == {1: stats.requests}
    assert stats.accuracy is not None and 0.0 < stats.accuracy <= 1.0
    assert results.read_window(0)["accuracy"] == stats.accuracy


@pytest.mark.slow
def test_run_one_window_with_a_folder_camera(deployment: Path, bootstrapped: dict) -> None:
    from controller.config import load_config
    from controller.service import run_controller
    from controller.triton.server import free_port
    from protocol.camera_results import CameraResults

    config = load_config(deployment)
    results = CameraResults(deployment.parent / "camera-results")
    log = open(deployment.parent / "camera.log", "wb")
    port = free_port()  # the directive endpoint's: the camera follows it there, not from the data directory
    camera = subprocess.Popen([sys.executable, "-m", "controller.cli", "camera", "--config", str(deployment),
                               "--name", "cam0", "--windows", "1", "--wait-seconds", "300",
                               "--controller-url", f"http://127.0.0.1:{port}", "--results", str(results.root)],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        controller = run_controller(config, max_windows=1, bootstrap_progress=False, camera_windows=1,
                                    directives_port=port)
        assert camera.wait(timeout=60) == 0, (deployment.parent / "camera.log").read_text()
    finally:
        if camera.poll() is None:
            camera.kill()
        log.close()
    state = controller.state
    assert state is not None and state.closed == 0
    result = results.read_window(0)
    assert result is not None
    assert result["accuracy"] is not None and result["requests"] > 0 and result["failed_requests"] == 0
    assert state.history and "cam0" in state.history[-1].cameras
    assert textwrap.dedent("cam0 window 0: accuracy") in (deployment.parent / "camera.log").read_text()
