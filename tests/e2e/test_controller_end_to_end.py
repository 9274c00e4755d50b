"""End to end on CPU: embedded Triton, 2 synthetic drifting cameras, 3 short windows, real trainers.

cam0 is our `ekya camera`; cam1 is a plain script that imports only numpy and tritonclient (as a user's own
client would), run from its own directory: it knows Triton's and the controller's URLs, nothing else. Both
are sampled server-side by their Triton models (capture), labelled, retrained and hot-swapped.

Asserts that models were retrained and hot-swapped, that accuracy recovered on the drifting camera, that
the plain client saw its stride change through the directive endpoint and followed it, that no inference
request failed, that metrics are exposed, and that a restarted controller resumes where
the previous one stopped (reattaching to the same Triton, same serving versions).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from controller.config import load_config
from controller.layout import DataLayout
from controller.service import run_controller
from controller.state import ControllerState
from controller.triton.server import free_port
from protocol.camera_results import CameraResults
from tests.metrics_coverage import MetricsScraper, missing, read_metric_names
from tests.triton_helpers import embedded_triton_section

PLAIN = "cam1"  # fed by tests/e2e/plain_camera.py
PLAIN_CAMERA = Path(__file__).with_name("plain_camera.py")
WINDOW_S = 30  # room for a second profile during a window on a slow 2-core CPU (AVX2 only: ~3x slower training)
WINDOWS = 3

CONFIG = {
    "cameras": [
        {"name": "cam0", "source": {"kind": "synthetic", "seed": 5, "drift": {"speed": 1.0, "magnitude": 1.2},
                                    "fps": 8, "objects_per_frame": 5}},
        {"name": "cam1", "source": {"kind": "synthetic", "seed": 6, "drift": {"speed": 0.8, "magnitude": 1.0},
                                    "fps": 8, "objects_per_frame": 5}},
    ],
    "edge_model": {"family": "resnet18", "input_size": 32, "hidden": 64},
    "golden_model": {"family": "resnet34", "input_size": 32, "hidden": 1024},
    "window_seconds": WINDOW_S,
    "resources": {"mode": "cpu", "cores": 2},
    "scheduler": {"name": "thief"},
    "retraining_configs": [{"layers": "all", "hidden": 64, "subsample": 1.0, "epochs": 4},
                           {"layers": "head", "hidden": 64, "subsample": 1.0, "epochs": 4}],
    "microprofiler": {"subsample": 0.25, "epochs": 2, "budget_fraction": 0.2, "ahead_seconds": 6,
                      "ahead_every_seconds": 5},
    "label_sampling_rate": 0.8,
    # a camera keeps up with every frame from a share of 0.45 on: while jobs train, thief gives each camera
    # about 0.35 (as it does at the default 0.25: 0.32 left it there, stride 1), a stride of about 1.3;
    # once they finished, 0.5 each, stride 1. So the plain client sees the stride change (thief on this
    # test's measured stride profile still trains in every case: offline, at 0.3-20 GPU-seconds per job)
    "inference": {"full_share": 0.45},
    "metrics": {"port": 0},
    "directives": {"port": 0},
    "bootstrap": {"edge_crops": 800, "edge_epochs": 3, "golden_crops": 2000, "golden_epochs": 4},
}


def _workers_alive(marker: str) -> list[str]:
    """Trainer workers of this test still running: their stdout is a worker.log under `marker` (a worker
    forked from the fork server has the server's command line, so the command line cannot tell)."""
    from controller.trainers import worker_log_of

    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [f"{pid}: {target}" for pid in pids
            if (target := worker_log_of(pid)) is not None and marker in target and target.endswith("worker.log")]


def _record_frames(config, camera: str, directory: Path) -> None:
    """The camera's frames of every window, as a user's recording: crops and the frame each belongs to."""
    import numpy as np

    from controller.source_context import source_context
    from sources.synthetic import SyntheticFrameSource, stream_spec

    source = SyntheticFrameSource(stream_spec(config.camera(camera).source, source_context(config, camera)))
    directory.mkdir(parents=True)
    per_window = source.frames_per_window(config.window_seconds)
    for window in range(WINDOWS):
        data = source.window(window, config.window_seconds)
        np.savez(directory / f"w{window}.npz", images=data.images, frame=data.frame_index - window * per_window,
                 fps=source.fps)


@pytest.mark.slow
def test_controller_end_to_end_with_restart(tmp_path: Path):
    config_path = tmp_path / "deployment.yaml"
    # fixed ports: the cameras are told both endpoints, and find the restarted controller's where they were
    config_path.write_text(yaml.safe_dump({**CONFIG, "data": {"dir": str(tmp_path / "data")},
                                           "triton": embedded_triton_section(), "directives": {"port": free_port()}}))
    config = load_config(config_path)
    layout = DataLayout(Path(config.data.dir))
    results = {name: CameraResults(tmp_path / "camera-results" / name) for name in config.camera_names}
    cameras: list[subprocess.Popen] = []
    scraped: dict[str, str] = {}
    scraper = MetricsScraper()  # the deployment's /metrics and Triton's, over HTTP while they run

    def on_started(controller) -> None:
        scraper.watch(controller.metrics_url, config.triton_metrics_url)
        with urllib.request.urlopen(controller.metrics_url, timeout=10) as response:
            scraped["text"] = response.read().decode()
        plain = tmp_path / "plain-camera"
        cameras.append(subprocess.Popen(
            [sys.executable, "-I", str(PLAIN_CAMERA), "--triton", f"127.0.0.1:{config.triton.grpc_port}",
             "--controller", f"http://127.0.0.1:{config.directives.port}", "--camera", PLAIN,
             "--frames", str(plain / "frames"), "--windows", str(WINDOWS)],
            cwd=plain, stdout=open(plain / "report.json", "wb"), stderr=open(plain / "stderr.log", "wb")))
        for name in config.camera_names:
            if name == PLAIN:
                continue
            cameras.append(subprocess.Popen(
                [sys.executable, "-m", "controller.cli", "camera", "--config", str(config_path), "--name", name,
                 "--windows", str(WINDOWS), "--triton-url", f"127.0.0.1:{config.triton.grpc_port}",
                 "--controller-url", f"http://127.0.0.1:{config.directives.port}",
                 "--results", str(results[name].root)], stdout=open(tmp_path / f"{name}.log", "wb"), stderr=subprocess.STDOUT))

    _record_frames(config, PLAIN, tmp_path / "plain-camera" / "frames")
    try:
        # Phase A: windows 0 and 1, then the controller stops; Triton and the cameras keep running.
        first = run_controller(config, max_windows=2, keep_triton=True, on_started=on_started,
                               bootstrap_progress=False)
        state_a = ControllerState.load(layout.state_file)
        # Windows 0 and 1 were planned and closed; window 2 is left for the next controller to plan.
        assert state_a is not None and state_a.window == 1 and state_a.closed == 1
        server_a = json.loads((layout.triton_dir / "server.json").read_text())
        versions_a = {n: c.serving_version for n, c in state_a.cameras.items()}
        assert not _workers_alive(str(tmp_path)), "a trainer outlived its controller"

        # Phase B: a new controller resumes: it plans window 2 (with window 1's data) and closes it.
        second = run_controller(config, max_windows=WINDOWS, on_started=lambda c: scraper.watch(c.metrics_url),
                                bootstrap_progress=False)
        assert second.server is not None and second.server.info.pid == server_a["pid"], "did not reattach to Triton"
        for process in cameras:
            process.wait(timeout=60)
    finally:
        seen = scraper.stop()
        for process in cameras:
            if process.poll() is None:
                process.kill()
        subprocess.run(["pkill", "-f", str(tmp_path / "data" / "triton")], check=False)

    # Metrics were exposed while running.
    text = scraped["text"]
    assert 'ekya_camera_serving_version{camera="cam0"}' in text
    assert "ekya_window_length_seconds" in text

    state = ControllerState.load(layout.state_file)
    assert state is not None and state.window == WINDOWS - 1 and state.closed == WINDOWS - 1
    for name, version in versions_a.items():
        assert state.cameras[name].serving_version >= version  # nothing rolled back by the restart
    # Models were retrained and hot-swapped, only when they beat the serving model.
    assert state.swaps >= 1, [r.cameras for r in state.history]
    entries = [c for r in state.history for c in r.cameras.values()]
    judged = [c for c in entries if c.retrained is not None]
    assert judged, [r.cameras for r in state.history]  # finished jobs were set against the serving model
    published = [c for c in judged if c.retrained.version is not None]
    for entry in published:
        assert entry.retrained.accuracy > max(entry.serving_accuracy or 0.0,
                                              entry.trial.accuracy if entry.trial else 0.0)
    for entry in judged:  # a job that did not beat the serving model was kept out, with its reason
        if entry.retrained.version is None:
            assert entry.retrained.accuracy <= entry.retrained.replaced_accuracy, entry.retrained
            assert "kept serving model" in (entry.retrained.decision or ""), entry.retrained
    # ...and each finished job is set against the planner: its wall time at its share, as planned
    jobs = [c.job for c in entries if c.job is not None and c.job.status == "ok"]
    assert jobs and all(0 < j.share <= 1 and j.img_per_s > 0 for j in jobs), jobs
    assert any((j.planned_train_seconds or 0) > 0 for j in jobs), jobs
    # ...with its fixed latency in parts: the worker's start-up, the new model's export and load
    assert all(0 < j.startup_seconds < WINDOW_S for j in jobs), jobs
    assert all(0 < c.retrained.publish_seconds < WINDOW_S for c in published), published
    # a micro-profiler trial model served at the plan (trial) or before the window closed (ahead_trial)
    # beat the model it replaced by the margin
    # ...and the micro-profiler ran ahead of the close (its profile was reused by the next plan)
    # ...and again during a window (ahead_every_seconds), as its new frames were labelled
    assert max(sum("ahead of the close" in e for e in r.events) for r in state.history) >= 2, \
        [r.events for r in state.history]
    for trial in [t for c in entries for t in (c.trial, c.ahead_trial) if t is not None and t.version is not None]:
        assert trial.accuracy > trial.replaced_accuracy + 0.02
    assert first.state.swaps <= state.swaps

    # No inference request failed, across swaps, instance changes and the controller restart.
    failed, requests = 0, 0
    for window in range(WINDOWS):
        for name in config.camera_names:
            if name == PLAIN:
                continue
            result = results[name].read_window(window)
            assert result is not None, (name, window)
            failed += result["failed_requests"] + result["shed_requests"]  # a camera at its stride is never shed
            requests += result["requests"]
            # every answered request's crops counted, with its round trip
            assert 0 < result["inferred_crops"] <= result["crops"], result
            assert 0 < result["latency_ms_p50"] <= result["latency_ms_p99"], result
    assert requests > 100 and failed == 0
    # ...nor one of the plain client's, which imported nothing of ekya and followed the published stride
    report = json.loads((tmp_path / "plain-camera" / "report.json").read_text())
    assert report["requests"] > 50 and report["failed"] == 0, report
    assert not {"controller", "camera", "protocol", "sources", "trainer", "common"} & set(report["modules"])
    assert state.cameras[PLAIN].stride in report["strides"], (state.cameras[PLAIN].stride, report["strides"])
    # ...and the stride changed under it (the plan shrank its inference share while a job trained) and it
    # followed each: under stride s it sent 1 frame in s
    assert len(report["strides"]) >= 2, report["strides"]
    assert any(stride > 1 for stride in report["strides"]), report["strides"]
    for stride, frames, sent in report["followed"]:  # (a stride's frames may be a few runs: 1 off per run)
        if frames >= 30:
            assert abs(sent / frames - 1 / stride) < 0.01 + 3 / frames, report["followed"]
    assert any(stride > 1 and frames >= 30 and sent < frames for stride, frames, sent in report["followed"]), \
        report["followed"]
    assert max(report["versions"]) > 1 or state.cameras[PLAIN].serving_version == 1, report
    # Both cameras were sampled where they were served (Triton captured their requests), not by the client.
    assert all(state.cameras[name].captured > 20 for name in config.camera_names), \
        {n: c.captured for n, c in state.cameras.items()}
    assert not (tmp_path / "plain-camera" / "data").exists()

    # Accuracy recovered on a drifting camera: a retrained model beats the bootstrap model on the last
    # window's frames (ground truth from the generator; the controller only ever saw golden labels).
    from controller.bootstrap_settings import bootstrap_for
    from controller.source_context import source_context
    from sources.synthetic import stream_spec
    from trainer.models import load_model
    from trainer.streams.synthetic import generate_window
    from trainer.training import evaluate

    boot = bootstrap_for(config, progress=False)  # cached: the bootstrap models (v1's checkpoint went with retention)
    gains = {}
    for name in config.camera_names:
        if state.cameras[name].serving_version <= 1:
            continue
        drifted = generate_window(stream_spec(config.camera(name).source, source_context(config, name)), WINDOWS - 1)
        before = evaluate(load_model(boot.edge_models[name]), drifted)
        after = evaluate(load_model(state.cameras[name].serving_checkpoint), drifted)
        gains[name] = (round(before, 3), round(after, 3))
    print("accuracy before and after retraining, per camera:", gains)
    assert gains and max(after - before for before, after in gains.values()) > 0.02, gains

    # Every metric the Grafana dashboard and the alert rules read was really set by the running deployment
    # (read over HTTP from its /metrics and Triton's, not from a registry); the GPU series only on a GPU.
    assert scraper.scrapes > 0
    unset = missing(seen, read_metric_names(), gpu=config.resources.mode == "gpu")
    assert not unset, f"the dashboard or the alerts read metrics the deployment never set: {sorted(unset)}"
