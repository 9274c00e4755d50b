"""The user's own ONNX detector: its output layouts parsed (thresholds, class filter, NMS), letterboxed
boxes mapped back to the frame, a real H.264 video through a real ONNX detector in-process (what
`ekya check-source` runs, also through the command) and served by a real Triton (what the camera
calls), that Triton killed and started again (frames without crops meanwhile, counted, the stream still
up; then detections again on the same reader), and the refusals of a detector file that does not fit."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from common.backoff import CallBackoff
from controller.triton.client import TritonClient
from controller.triton.repository import ModelRepository
from controller.triton.server import TritonPorts, TritonServer, free_port, free_port_settings, wait_for_ports
from controller.triton.serving import ServingManager
from controller.triton.spec import ModelSpec
from sources import SourceContext, source_kind
from sources.detection.config import OnnxDetectorConfig, detector_model_name
from sources.detection.onnx_detector import OnnxDetector, TritonRunner, letterbox, parse_output, to_frame
from sources.detection.tracker import iou_matrix
from sources.video import VideoSource
from tests.sources.detector_helpers import lane_bands, lane_detector_onnx, letterboxed_background
from tests.sources.video_helpers import read_all, scene_video
from tests.triton_helpers import ADMIN_KEY
from trainer.streams.scene import SceneSpec
from trainer.user_models import UserModelError, inspect_detector

SIZE = 128  # the detector's input
SCENE = SceneSpec(width=320, height=240, fps=10, seconds=3, objects=3, object_size=40, seed=1)


def _config(layout: str, **extra: object) -> OnnxDetectorConfig:
    return OnnxDetectorConfig.model_validate({"kind": "onnx", "model": "/d.onnx", "output_layout": layout,
                                              "score_threshold": 0.5, **extra})


def test_the_xyxy_layout_thresholds_and_filters_classes() -> None:
    rows = np.array([[10, 10, 50, 50, 0.9, 2], [60, 60, 90, 90, 0.3, 2], [5, 5, 20, 20, 0.8, 7]], np.float32)
    for output in (rows, rows[None]):  # [N,6] and [1,N,6]
        found = parse_output(output, _config("xyxy_score_class"))
        assert found.boxes.tolist() == [[10, 10, 50, 50], [5, 5, 20, 20]] and found.classes.tolist() == [2, 7]
    only = parse_output(rows, _config("xyxy_score_class", classes=[7]))
    assert only.classes.tolist() == [7]
    with pytest.raises(ValueError, match="6"):
        parse_output(np.zeros((3, 5), np.float32), _config("xyxy_score_class"))


def test_the_yolo_layouts_decode_centres_and_suppress_duplicates() -> None:
    # YOLOv8: [1, 4+C, N], two classes; candidates 0 and 1 are one object (IoU 0.8), 2 is another, 3 is weak
    cands = np.array([[50, 50, 20, 20, 0.9, 0.1], [51, 50, 20, 20, 0.7, 0.1], [150, 80, 30, 10, 0.1, 0.8],
                      [10, 10, 5, 5, 0.2, 0.3]] + [[200, 200, 5, 5, 0.01, 0.02]] * 6, np.float32)
    v8 = cands.T[None]  # more candidates than values per candidate, as in every real head (8400 x 84)
    found = parse_output(v8, _config("yolo"))
    order = np.argsort(found.boxes[:, 0])
    assert found.boxes[order].tolist() == [[40, 40, 60, 60], [135, 75, 165, 85]]
    assert found.classes[order].tolist() == [0, 1] and np.allclose(found.scores[order], [0.9, 0.8])
    assert len(parse_output(cands[None], _config("yolo")).boxes) == 2  # [1, N, 4+C] too
    # YOLOv5: [1, N, 5+C], the score is objectness x class score
    v5 = np.array([[[50, 50, 20, 20, 0.9, 0.9, 0.1], [150, 80, 30, 10, 0.4, 0.1, 0.9]]], np.float32)
    found = parse_output(v5, _config("yolov5"))
    assert found.boxes.tolist() == [[40, 40, 60, 60]] and np.allclose(found.scores, [0.81])


def test_letterboxed_boxes_map_back_to_the_frame() -> None:
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[50:100, 60:180] = 255
    tensor, fit = letterbox(frame, 64)
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32 and tensor.max() <= 1.0
    white = np.argwhere(tensor[0, 0] > 0.9)
    (y0, x0), (y1, x1) = white.min(axis=0), white.max(axis=0) + 1
    back = to_frame(np.array([[x0, y0, x1, y1]], np.float64), fit, 300, 200)[0]
    assert np.abs(back - [60, 50, 180, 100]).max() <= 5  # one input pixel is ~4.7 frame pixels here
    assert (tensor[0, :, 0, 0] == np.float32(114 / 255)).all()  # padding above the picture


def test_calls_back_off_after_a_failure_and_reconnect_after_two(tmp_path: Path) -> None:
    """A Triton that is not there (a real gRPC client, a port nothing listens on): the first frame's call
    fails, the frames while it waits are not sent at all, each frame without detections is counted,
    and the second failure in a row drops the channel for a fresh one."""
    runner = TritonRunner(f"127.0.0.1:{free_port()}", "gate.detector", timeout_s=1.0)
    runner.backoff = CallBackoff(first_s=0.5)  # (0.1 s by default: a wide margin on a loaded box)
    detector = OnnxDetector(_config("xyxy_score_class", input_size=64), 16, runner, where="gate.detector")
    frame = np.zeros((48, 64, 3), np.uint8)
    try:
        found = [detector.detect(frame) for _ in range(3)]
        assert all(len(f.crops) == 0 for f in found) and detector.errors == 3
        assert runner.backoff.failures_in_a_row == 1 and runner.reconnects == 0  # one call went out
        first_error = detector.last_error
        assert first_error is not None and first_error.startswith("detector gate.detector: ")
        time.sleep(0.55)  # past the first wait
        detector.detect(frame)
        assert runner.backoff.failures_in_a_row == 2 and runner.reconnects == 1 and detector.errors == 4
        assert runner.backoff.delay_s == 2.0  # doubling (0.5, 1, 2), up to 2 s
    finally:
        detector.close()


def _recall(frames: list, truth: list) -> float:
    found = total = 0
    for frame, true in zip(frames, truth):
        iou = iou_matrix(true.boxes, frame.boxes)
        for row in iou:
            total += 1
            found += bool(len(row) and row.max() >= 0.6)
    return found / total




@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    """The scene as a real H.264 file, and the test's detector for it (it knows the background)."""
    root = tmp_path_factory.mktemp("onnx-detector")
    truth = scene_video(root / "scene.mp4", SCENE)
    background = letterboxed_background([f.image for f in truth], SIZE)
    detector = lane_detector_onnx(root / "lanes.onnx", background, lane_bands(SCENE.width, SCENE.height, 3, SIZE))
    return root / "scene.mp4", detector, truth


def _source(video: Path, detector: Path) -> VideoSource:
    return VideoSource.model_validate({"kind": "video", "url": str(video), "detector": {
        "kind": "onnx", "model": str(detector), "input_size": SIZE, "score_threshold": 0.5}})


@pytest.mark.slow
def test_a_real_video_through_the_detector_in_process(scene) -> None:
    video, detector, truth = scene
    ctx = SourceContext(camera="gate", crop_size=16, window_seconds=10.0, history_windows=1)  # no Triton URL
    frames = read_all(source_kind("video").open(_source(video, detector), ctx), SCENE.seconds + 10)
    assert len(frames) == SCENE.frames
    assert _recall(frames, truth) >= 0.9
    assert all(f.crops.shape[1:] == (16, 16, 3) for f in frames)


class Collector:
    """Takes a reader's frames on a thread, as the camera does, while the test stops and starts Triton."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self.frames: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self.reader.next_frame(0.2)
            if frame is not None:
                self.frames.append(frame)

    def __enter__(self) -> Collector:
        self.reader.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.reader.close()

    def wait(self, condition, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out with {len(self.frames)} frames"
            time.sleep(0.05)


def _start_triton(root: Path, ports: dict[str, int], runtime, load: list[str]) -> TritonServer:
    server = TritonServer(root / "repo", root / "work", admin_key=ADMIN_KEY, runtime=runtime, load_models=load,
                          **ports)
    server.start()
    return server


@pytest.mark.slow
def test_the_detector_served_by_triton_rides_out_a_triton_restart(scene, tmp_path: Path, triton_runtime) -> None:
    video, detector, truth = scene
    found = inspect_detector(detector, "detector.model", input_size=SIZE)
    assert found.input_dims == (1, 3, SIZE, SIZE) and found.output_dims == (3, 6)
    name = detector_model_name("gate")
    spec = ModelSpec(name=name, input_name=found.input_name, input_dims=found.input_dims,
                     output_name=found.output_name, output_dims=found.output_dims, max_batch_size=0,
                     dynamic_batching=False)
    repository = ModelRepository(tmp_path / "repo")
    ports = free_port_settings()
    servers = [_start_triton(tmp_path, ports, triton_runtime, [])]
    try:
        with TritonClient(servers[0].info.grpc_url, admin_key=ADMIN_KEY) as admin:
            # validated (full shapes, no batch) and loaded, as the controller does
            ServingManager(repository, admin).deploy(spec, detector)
        ctx = SourceContext(camera="gate", crop_size=16, window_seconds=10.0, history_windows=1,
                            triton_url=servers[0].info.grpc_url)
        looped = VideoSource.model_validate({**_source(video, detector).model_dump(), "loop": True})
        reader = source_kind("video").open(looped, ctx)
        with Collector(reader) as taken:
            taken.wait(lambda: len(taken.frames) >= 20)
            served = list(taken.frames)
            assert reader.health().detector_errors == 0
            # Triton killed: frames keep coming, without crops, each one counted; the stream stays up
            os.kill(servers[0].info.pid, signal.SIGKILL)
            servers[0].stop()  # reaps it and its stubs, as the supervisor does
            killed_at = len(taken.frames)
            taken.wait(lambda: reader.health().detector_errors >= 5)
            assert wait_for_ports(TritonPorts(ports["grpc_port"], ports["http_port"], ports["metrics_port"]))
            servers.append(_start_triton(tmp_path, ports, triton_runtime, [name]))  # back on the same ports
            back_at = len(taken.frames)
            taken.wait(lambda: any(len(f.crops) for f in taken.frames[back_at:]))
            recovered_at = next(i for i in range(back_at, len(taken.frames)) if len(taken.frames[i].crops))
            taken.wait(lambda: len(taken.frames) >= recovered_at + 20)
            health = reader.health()
            after = taken.frames[recovered_at:recovered_at + 20]
            outage = taken.frames[killed_at + 1:back_at]
    finally:
        for server in servers:
            server.stop()
    truth_of = [truth[f.index % len(truth)] for f in served]
    assert _recall(served, truth_of) >= 0.9
    assert outage and all(len(f.crops) == 0 for f in outage)
    assert health.up and health.detector_errors >= len(outage) and name in (health.detector_error or "")
    # the same reader is served again (a fresh channel to the same URL), as well as before
    assert recovered_at - back_at <= 30, "the detector took over 3 s to come back after Triton did"
    assert _recall(after, [truth[f.index % len(truth)] for f in after]) >= 0.9
    assert reader._detector.runner.reconnects >= 1


def test_detector_files_that_do_not_fit_are_refused_naming_the_file(scene, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    _, detector, _ = scene
    with pytest.raises(UserModelError, match=f"{tmp_path / 'missing.onnx'}: file not found"):
        inspect_detector(tmp_path / "missing.onnx", "detector.model", input_size=SIZE)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(UserModelError, match="not a readable ONNX model"):
        inspect_detector(tmp_path / "junk.onnx", "detector.model", input_size=SIZE)
    with pytest.raises(UserModelError, match=rf"input 'images' has shape \[1, 3, {SIZE}, {SIZE}\]; .* input_size 64"):
        inspect_detector(detector, "detector.model", input_size=64)
    flat = tmp_path / "flat.onnx"  # not an image model: a vector in
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "flat",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(flat))
    with pytest.raises(UserModelError, match=rf"{flat}: input 'x' has shape \[1, 10\]; an image detector"):
        inspect_detector(flat, "detector.model", input_size=SIZE)


def _write_config(tmp_path: Path, video: Path, detector: dict) -> Path:
    import yaml

    config = tmp_path / "deployment.yaml"
    config.write_text(yaml.safe_dump({"cameras": [{"name": "gate", "source": {
        "kind": "video", "url": str(video), "detector": {"kind": "onnx", **detector}}}],
        "edge_model": {"input_size": 16}, "window_seconds": 10}))
    return config


def _last_json(text: str) -> dict:
    import json

    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.slow
def test_check_source_runs_the_detector_in_process(scene, tmp_path: Path, capsys) -> None:
    """No Triton anywhere: `ekya check-source` runs the camera's detector file with onnxruntime."""
    video, detector, _ = scene
    from controller.cli import main

    config = _write_config(tmp_path, video, {"model": str(detector), "input_size": SIZE})
    assert main(["check-source", "--config", str(config), "--name", "gate", "--seconds", "2", "--json"]) == 0
    report = _last_json(capsys.readouterr().out)
    assert report["errors"] == [] and 15 <= report["frames"] <= 21
    assert report["crops"] >= 2.5  # the scene's 3 objects, each frame (no background to learn first)


def test_check_source_refuses_a_detector_file_the_controller_would_refuse(scene, tmp_path: Path, capsys) -> None:
    video, detector, _ = scene
    from controller.cli import main

    missing = _write_config(tmp_path, video, {"model": str(tmp_path / "gone.onnx")})
    assert main(["check-source", "--config", str(missing), "--name", "gate", "--json"]) == 2
    assert _last_json(capsys.readouterr().out)["errors"] == [
        f"camera 'gate': detector.model {tmp_path / 'gone.onnx'}: file not found"]
    wrong_size = _write_config(tmp_path, video, {"model": str(detector), "input_size": 64})
    assert main(["check-source", "--config", str(wrong_size), "--name", "gate", "--json"]) == 2
    (error,) = _last_json(capsys.readouterr().out)["errors"]
    assert error.startswith(f"camera 'gate': detector.model {detector}: input 'images' has shape "
                            f"[1, 3, {SIZE}, {SIZE}]; an image detector with the config's input_size 64")
