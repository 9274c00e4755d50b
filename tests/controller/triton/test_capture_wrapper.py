"""Capture for backends that cannot capture (NVIDIA's native onnxruntime): the camera's public name is a
Python (BLS) wrapper that forwards to the ONNX model "<camera>.onnx" and captures what it serves.

The container's repository shape is rendered and checked file by file; the same shape is served by the
embedded tritonserver, which has no onnxruntime backend, with our ekya_onnx as the inner model: requests
through the public name, exact captured crops and ids, hot swaps (the version in responses and samples),
instance changes and a version taken out, none failing a request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import protocol.capture
from controller.runtime.serving import TritonServing
from controller.triton.repository import ModelRepository
from controller.triton.spec import InvalidModelNameError, ModelSpec, check_model_name
from protocol.capture import chunk_files, read_chunk, request_draw
from protocol.model_input import to_model_input
from tests.triton_helpers import INPUT_DIMS, export_tiny, running_server

CAPTURE = dict(capture_rate=0.5, capture_budget_bytes=2**24, capture_chunk_seconds=0.3)


def _reference(onnx: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": batch})[0]


def test_the_containers_repository_wraps_the_onnxruntime_model_in_a_capturing_python_model(tmp_path: Path) -> None:
    onnx = export_tiny(tmp_path / "m.onnx", seed=1)[0]
    repository = ModelRepository(tmp_path / "repo")
    spec = ModelSpec(name="cam0", input_dims=INPUT_DIMS, backend="onnxruntime", instance_kind="KIND_GPU", gpus=(1,),
                     instance_count=3, max_queue_size=16, queue_timeout_us=250_000, capture_dir="/capture", **CAPTURE)
    assert spec.wrapped
    repository.write_spec(spec)
    assert repository.add_version("cam0", onnx) == 1
    public, inner = (tmp_path / "repo" / "cam0" / "config.pbtxt").read_text(), \
        (tmp_path / "repo" / "cam0.onnx" / "config.pbtxt").read_text()
    # the public name: the python wrapper, CPU instances as many as the plan's, the bounded queue, capture
    assert 'name: "cam0"' in public and 'backend: "python"' in public and "kind: KIND_CPU" in public
    assert "count: 3" in public and "timeout_action: REJECT" in public and "num_versions: 1" in public
    assert '"inner_model", value: { string_value: "cam0.onnx" }' in public and '"/capture"' in public
    # the inner model: NVIDIA's native onnxruntime on the plan's device, the previous version kept loaded
    assert 'name: "cam0.onnx"' in inner and 'backend: "onnxruntime"' in inner
    assert "kind: KIND_GPU" in inner and "gpus: [ 1 ]" in inner and "count: 3" in inner
    assert "num_versions: 2" in inner and "default_queue_policy" not in inner and "capture" not in inner
    # every file the stock image needs is in the repository: the ONNX file, the wrapper, the capture module
    assert (tmp_path / "repo" / "cam0.onnx" / "1" / "model.onnx").read_bytes() == onnx.read_bytes()
    assert (tmp_path / "repo" / "cam0" / "1" / "ekya_capture.py").read_bytes() == \
        Path(protocol.capture.__file__).read_bytes()
    assert "pb_utils.InferenceRequest" in (tmp_path / "repo" / "cam0" / "1" / "model.py").read_text()
    assert repository.models() == ["cam0"] and repository.versions("cam0") == [1]
    assert repository.loadable() == ["cam0.onnx", "cam0"]  # the inner model first
    assert repository.model_file("cam0", 1) == tmp_path / "repo" / "cam0.onnx" / "1" / "model.onnx"
    # the embedded server's variant is the same shape but for the inner model's backend
    embedded = spec.model_copy(update={"backend": "ekya_onnx", "capture_via": "wrapper", "instance_kind": "KIND_CPU",
                                       "gpus": ()})
    other = ModelRepository(tmp_path / "embedded")
    other.write_spec(embedded)
    assert (tmp_path / "embedded" / "cam0" / "config.pbtxt").read_text() == public.replace("kind: KIND_GPU", "kind: KIND_CPU")
    assert 'backend: "ekya_onnx"' in (tmp_path / "embedded" / "cam0.onnx" / "config.pbtxt").read_text()
    # without a capture directory nothing is wrapped; ekya_onnx captures by itself unless told otherwise
    assert not spec.model_copy(update={"capture_dir": None}).wrapped
    assert not embedded.model_copy(update={"capture_via": "auto"}).wrapped
    with pytest.raises(InvalidModelNameError, match="reserved"):
        check_model_name("cam0.onnx")


def test_turning_the_wrapper_on_and_off_keeps_every_version(tmp_path: Path) -> None:
    models = [export_tiny(tmp_path / f"m{seed}.onnx", seed=seed)[0] for seed in (1, 2)]
    repository = ModelRepository(tmp_path / "repo")
    plain = ModelSpec(name="cam0", input_dims=INPUT_DIMS, backend="onnxruntime")
    repository.write_spec(plain)
    for onnx in models:
        repository.add_version("cam0", onnx)
    wrapped = plain.model_copy(update={"capture_dir": "/capture", **CAPTURE})
    repository.write_spec(wrapped)  # an external deployment from before capture, brought up to date
    assert repository.is_wrapped("cam0") and repository.versions("cam0") == [1, 2]
    assert [repository.model_file("cam0", v).read_bytes() for v in (1, 2)] == [m.read_bytes() for m in models]
    assert not (tmp_path / "repo" / "cam0" / "2" / "model.onnx").exists()
    (tmp_path / "repo" / "cam0.onnx" / "7").mkdir()  # a stray inner version (an add cut short)
    assert repository.add_version("cam0", models[0]) == 8 and repository.versions("cam0") == [1, 2, 8]
    assert not (tmp_path / "repo" / "cam0.onnx" / "7").exists()
    repository.remove_version("cam0", 8, keep=False)
    repository.write_spec(plain)
    assert not repository.is_wrapped("cam0") and repository.versions("cam0") == [1, 2]
    assert [repository.model_file("cam0", v).read_bytes() for v in (1, 2)] == [m.read_bytes() for m in models]
    assert not (tmp_path / "repo" / "cam0.onnx").exists() and not (tmp_path / "repo" / "cam0" / "1" / "model.py").exists()


@pytest.mark.slow
def test_the_wrapped_shape_serves_captures_and_swaps_on_the_embedded_server(tmp_path: Path, triton_runtime) -> None:
    import tritonclient.grpc as grpcclient

    first, second = (export_tiny(tmp_path / f"m{seed}.onnx", seed=seed)[0] for seed in (1, 2))
    capture_dir = tmp_path / "capture"
    spec = ModelSpec(name="cam", input_dims=INPUT_DIMS, capture_dir=str(capture_dir), capture_via="wrapper",
                     max_queue_size=64, queue_timeout_us=5_000_000, **CAPTURE)
    sent: dict[str, np.ndarray] = {}
    answers: dict[str, tuple[np.ndarray, int]] = {}
    failures: list[str] = []

    def send(client, request_id: str, n: int = 1) -> None:  # type: ignore[no-untyped-def]
        rng = np.random.default_rng(int(request_draw(request_id) * 2**32))  # per request: threads share none
        crops = rng.integers(0, 256, size=(n, *INPUT_DIMS[1:], 3), dtype=np.uint8)
        tensor = grpcclient.InferInput("input", [n, *INPUT_DIMS], "FP32")
        tensor.set_data_from_numpy(to_model_input(crops))
        try:
            result = client.infer("cam", [tensor], request_id=request_id, client_timeout=30)
        except Exception as exc:
            failures.append(f"{request_id}: {exc}")
            return
        sent[request_id] = crops
        answers[request_id] = (result.as_numpy("logits"), int(result.get_response().model_version))

    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (server, admin, serving):
        assert serving.deploy(spec, first).version == 1
        index = {(m["name"], m.get("version"), m.get("state")) for m in admin.repository_index()}
        assert {("cam", "1", "READY"), ("cam.onnx", "1", "READY")} <= index
        client = grpcclient.InferenceServerClient(server.info.grpc_url)
        for i in range(12):
            send(client, f"a{i}", 1 + i % 3)

        stop = threading.Event()

        def load() -> None:  # a client all along the swaps and instance changes
            other = grpcclient.InferenceServerClient(server.info.grpc_url)
            k = 0
            while not stop.is_set():
                send(other, f"load{k}")
                k += 1
                time.sleep(0.01)
            other.close()

        background = threading.Thread(target=load)
        background.start()
        try:
            assert serving.publish("cam", second).version == 2  # hot swap
            for i in range(12):
                send(client, f"b{i}", 2)
            controller = TritonServing(serving, admin)  # the reconcile core's port, as the controller drives it
            controller.set_instances("cam", 2, None)  # both halves, inner first
            for i in range(6):
                send(client, f"c{i}")
            controller.retire_version("cam", 2, "test")  # version 2 taken out: the public half goes first
            assert controller.served_versions(["cam"]) == {"cam": 1} and controller.instance_count("cam") == 2
            for i in range(6):
                send(client, f"d{i}")
        finally:
            stop.set()
            background.join(timeout=60)
        client.close()
        assert not failures, failures[:5]
        configs = [(tmp_path / "repo" / m / "config.pbtxt").read_text() for m in ("cam", "cam.onnx")]
        assert all("count: 2" in text for text in configs)

    # every answer came from the version it names, through the public name
    for request_id, (logits, version) in answers.items():
        if request_id[0] in "abcd":
            assert version == {"a": 1, "b": 2, "c": 2, "d": 1}[request_id[0]], request_id
        onnx = first if version == 1 else second
        np.testing.assert_allclose(logits, _reference(onnx, to_model_input(sent[request_id])), rtol=1e-4, atol=1e-5)
    assert {v for _, v in answers.values()} == {1, 2}
    assert sum(i.startswith("load") for i in answers) > 10  # the background client ran across the changes

    # the wrapper captured its sample (by the ids' hash) with the exact crops, ids, predictions and versions
    parts = [read_chunk(p) for p in chunk_files(capture_dir / "cam")]
    captured = {str(i) for part in parts for i in part.request_id}
    assert captured and captured == {i for i in answers if request_draw(i) < CAPTURE["capture_rate"]}
    for part in parts:
        for request_id in np.unique(part.request_id):
            rows = part.request_id == request_id
            logits, version = answers[str(request_id)]
            np.testing.assert_array_equal(part.images[rows], sent[str(request_id)])
            np.testing.assert_array_equal(part.prediction[rows], logits.argmax(axis=1))
            assert np.all(part.version[rows] == version)
