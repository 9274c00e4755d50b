"""Video cameras through the reference camera client into a real Triton: a live HTTP stream (MPEG-TS,
paced at real time) that is cut and restarted, and a looping file camera beside it. The live camera is
reported down while its stream is away (its results say so, the gap is counted), reconnects, and serves
again; the file camera's crops reach Triton all along. Triton serves each camera with a python-backend
model that logs the id of every request, so what arrived is checked where it arrived."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from camera.client import CameraClient
from camera.directives import HttpDirectiveWatcher
from controller.runtime.cameras import DirectiveChannel
from controller.runtime.directives_http import DirectivesServer
from controller.triton.server import TritonServer, free_port_settings
from protocol.camera_results import CameraResults
from sources import SourceContext, source_kind
from sources.video import VideoSource
from tests.camera.test_remote import id_logging_model
from tests.sources.video_helpers import LiveHttpStream, scene_video
from tests.triton_helpers import ADMIN_KEY, INPUT_DIMS
from trainer.streams.scene import SceneSpec

WINDOW_S = 4.0
CUT_AT, BACK_AT = 2.5, 5.5  # seconds after window 0 starts: the outage covers most of window 1


def model_for(repository: Path, camera: str, log: Path) -> None:
    """The id-logging model under the camera's name."""
    id_logging_model(repository, log)
    (repository / "cam").rename(repository / camera)
    config = repository / camera / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "cam"', f'name: "{camera}"'))


@pytest.mark.slow
def test_a_live_stream_cut_and_restarted_while_a_file_camera_serves_on(tmp_path: Path, triton_runtime) -> None:
    spec = SceneSpec(seconds=6, fps=10, seed=2)
    scene_video(tmp_path / "live.ts", spec)
    scene_video(tmp_path / "file.mp4", spec)
    stream = LiveHttpStream(tmp_path / "live.ts", spec.seconds).start()
    ctx = {name: SourceContext(camera=name, crop_size=INPUT_DIMS[-1], window_seconds=WINDOW_S, history_windows=1)
           for name in ("live", "file")}
    sources = {
        "live": VideoSource.model_validate({"kind": "video", "url": stream.url, "read_timeout_s": 1.0,
                                            "max_backoff_s": 1.0, "detector": {"min_area": 100}}),
        "file": VideoSource.model_validate({"kind": "video", "url": str(tmp_path / "file.mp4"), "loop": True,
                                            "detector": {"min_area": 100}}),
    }
    logs = {name: tmp_path / f"{name}-requests.log" for name in sources}
    for name in sources:
        model_for(tmp_path / "repo", name, logs[name])
    server = TritonServer(tmp_path / "repo", tmp_path / "triton", admin_key=ADMIN_KEY, runtime=triton_runtime,
                          load_models=list(sources), **free_port_settings())
    info = server.start()
    channel = DirectiveChannel(serving_version=lambda camera: 1)
    t0 = time.time() + 1.5
    for name in sources:
        channel.publish(name, t0=t0, window_seconds=WINDOW_S, stride=1.0, window=0, stop_after_window=2)
    directives = DirectivesServer(channel, list(sources), window_seconds=WINDOW_S).start(0)
    results = {name: CameraResults(tmp_path / "results" / name) for name in sources}
    done: dict[str, list] = {}
    threads = []
    for name, source in sources.items():
        client = CameraClient(name, source_kind("video").open(source, ctx[name]), info.grpc_url,
                              HttpDirectiveWatcher(directives.url, name, interval_s=0.2), results[name],
                              request_timeout_s=5.0)
        threads.append(threading.Thread(target=lambda c=client, n=name: done.__setitem__(n, c.run(
            threading.Event(), directive_timeout_s=20)), daemon=True))
        threads[-1].start()
    try:
        time.sleep(max(0.0, t0 + CUT_AT - time.time()))
        stream.cut()
        time.sleep(max(0.0, t0 + BACK_AT - time.time()))
        stream.restart()
        for thread in threads:
            thread.join(timeout=3 * WINDOW_S + 20)
    finally:
        stream.close()
        directives.close()
        server.stop()
    assert sorted(done) == ["file", "live"]
    live = [results["live"].read_window(w) for w in range(3)]
    file = [results["file"].read_window(w) for w in range(3)]
    assert all(live) and all(file)
    # the live camera: cut at 2.5 s, down once what it had buffered of the stream has played (in window 1),
    # back in window 2, the gap counted
    assert live[0]["source"]["up"] is True and live[0]["requests"] > 0
    assert live[1]["source"]["up"] is False and "Connection refused" in live[1]["source"]["last_error"]
    assert live[2]["source"]["up"] is True and live[2]["requests"] > 0
    totals = live[2]["source"]["totals"]
    assert totals["reconnects"] >= 1 and totals["gap_seconds"] >= BACK_AT - CUT_AT - 0.5
    assert totals["missed_frames"] >= 10 * (BACK_AT - CUT_AT - 0.5)
    assert sum(w["source"]["reconnects"] for w in live) == totals["reconnects"]
    assert stream.connections >= 2
    # the file camera never noticed: its crops reached Triton in every window, the outage's included
    assert all(w["source"]["up"] and w["requests"] > 0 and w["failed_requests"] == 0 for w in file)
    received = logs["file"].read_text().split()
    assert {r.split("/")[1] for r in received} == {"w0", "w1", "w2"}
    assert len(received) == sum(w["requests"] for w in file)
    # the live camera's requests carry its ids too; window 1 lost more than the outage's 3 s of its frames
    live_ids = logs["live"].read_text().split()
    assert len(live_ids) == sum(w["requests"] for w in live)
    assert len([r for r in live_ids if r.startswith("live/w1/")]) == live[1]["requests"] < WINDOW_S * 10 - 20
    assert json.loads((results["live"].root / "live.json").read_text())["source"]["reconnects"] >= 1
