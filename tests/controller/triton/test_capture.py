"""Server-side sample capture in the ekya_onnx backend, against a real tritonserver on loopback: what is
served is captured (the right crops, ids, arrival times, predictions), counted on Triton's metrics port,
never at a request's expense (an unwritable capture directory), and bad inputs never reach the capture."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from controller.triton.spec import ModelSpec
from protocol.capture import chunk_files, read_chunk, read_counts, request_draw
from protocol.model_input import to_model_input
from tests.triton_helpers import INPUT_DIMS, export_tiny, running_server

RATE = 0.5
REQUESTS = 40


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus text exposition (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[line.index("{"):line.index("}")]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


def _wait_for(predicate, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def _infer(client, model: str, batch: np.ndarray, request_id: str = "", dtype: str = "FP32"):  # type: ignore[no-untyped-def]
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput("input", list(batch.shape), dtype)
    tensor.set_data_from_numpy(batch)
    return client.infer(model, [tensor], request_id=request_id, client_timeout=30).as_numpy("logits")


@pytest.fixture(scope="module")
def server(tmp_path_factory, triton_runtime):  # type: ignore[no-untyped-def]
    """One server for the module; each test deploys models of its own names."""
    root = tmp_path_factory.mktemp("capture")
    with running_server(root / "repo", root / "work", triton_runtime) as (server, client, serving):
        yield server, serving, export_tiny(root / "m.onnx", seed=1)[0], client


@pytest.fixture
def served(server, tmp_path: Path, request):  # type: ignore[no-untyped-def]
    """a-*: captures into a directory; b-*: its capture directory cannot be made (a file is in its way).
    Yields the server, the models' names and a-*'s capture directory."""
    server, serving, model, _ = server
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    suffix = re.sub(r"[^A-Za-z0-9]", "", request.node.name)[-40:]
    names = (f"a-{suffix}", f"b-{suffix}")
    capture = dict(capture_rate=RATE, capture_budget_bytes=2**24, capture_chunk_seconds=0.3)
    serving.deploy(ModelSpec(name=names[0], input_dims=INPUT_DIMS, capture_dir=str(tmp_path / "capture"),
                             **capture), model)
    serving.deploy(ModelSpec(name=names[1], input_dims=INPUT_DIMS, capture_dir=str(blocker / "capture"),
                             **{**capture, "capture_rate": 1.0}), model)
    yield server, names, tmp_path / "capture" / names[0]


def test_served_requests_are_captured_with_their_ids_times_and_predictions(served):
    import tritonclient.grpc as grpcclient

    server, (model, _), directory = served
    rng = np.random.default_rng(0)
    crops = {f"req-{i}": rng.integers(0, 256, size=(1 + i % 3, *INPUT_DIMS[1:], 3), dtype=np.uint8)
             for i in range(REQUESTS)}
    answers: dict[str, np.ndarray] = {}
    times: dict[str, tuple[float, float]] = {}

    def send(ids: list[str]) -> None:  # two clients at once: the dynamic batcher puts requests together
        client = grpcclient.InferenceServerClient(server.info.grpc_url)
        for request_id in ids:
            before = time.time()
            answers[request_id] = _infer(client, model, to_model_input(crops[request_id]), request_id)
            times[request_id] = (before, time.time())
        client.close()

    ids = list(crops)
    threads = [threading.Thread(target=send, args=(ids[k::2],)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == REQUESTS

    # the sample is the ids' hash against the rate: a rerun would capture the same requests
    expected = {request_id for request_id in ids if request_draw(request_id) < RATE}
    expected_crops = sum(len(crops[i]) for i in expected)
    assert 0 < len(expected) < REQUESTS

    def captured() -> list:
        parts = [read_chunk(p) for p in chunk_files(directory)]
        return parts if sum(len(p) for p in parts) >= expected_crops else []

    parts = _wait_for(captured)
    assert sum(len(p) for p in parts) == expected_crops
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temp file left behind
    seen: set[str] = set()
    for part in parts:
        for request_id in np.unique(part.request_id):
            rows = part.request_id == request_id
            seen.add(str(request_id))
            np.testing.assert_array_equal(part.images[rows], crops[request_id])  # exactly what was sent
            np.testing.assert_array_equal(part.prediction[rows], answers[request_id].argmax(axis=1))
            before, after = times[request_id]
            assert np.all((part.arrival[rows] >= before - 0.05) & (part.arrival[rows] <= after + 0.05))
            assert np.all(part.version[rows] == 1)
    assert seen == expected

    # the writer's own counters, in the file beside its chunks (the controller's metrics read them)
    def counted() -> list:
        found = read_counts(directory)
        return found if sum(c.samples for _, c, _ in found) >= expected_crops else []

    writers = _wait_for(counted)
    assert sum(c.samples for _, c, _ in writers) == expected_crops
    assert sum(c.errors for _, c, _ in writers) == 0
    assert all(not any(c.dropped.values()) for _, c, _ in writers)


def test_an_unwritable_capture_directory_costs_no_request(served):
    import tritonclient.grpc as grpcclient

    server, (_, model), _ = served
    client = grpcclient.InferenceServerClient(server.info.grpc_url)
    batch = to_model_input(np.zeros((2, *INPUT_DIMS[1:], 3), np.uint8))
    for i in range(10):
        assert _infer(client, model, batch, f"b-{i}").shape == (2, 6)
    client.close()
    # nothing was written (nowhere to write), and the writer said why in Triton's log (once a minute at most)
    assert _wait_for(lambda: "capture: " in server.log_file.read_text() and "Not a directory" in server.log_file.read_text(), timeout_s=30), \
        server.log_file.read_text()[-2000:]


@pytest.mark.parametrize("bad", ["wrong_shape", "wrong_dtype", "empty_batch"])
def test_a_bad_input_gets_an_error_and_never_reaches_the_capture(served, bad):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    server, (model, _), directory = served
    client = grpcclient.InferenceServerClient(server.info.grpc_url)
    good = to_model_input(np.full((1, *INPUT_DIMS[1:], 3), 7, np.uint8))
    batch, dtype = {"wrong_shape": (np.zeros((1, 3, 8, 8), np.float32), "FP32"),
                    "wrong_dtype": (good.astype(np.float64), "FP64"),
                    "empty_batch": (np.zeros((0, *INPUT_DIMS), np.float32), "FP32")}[bad]
    for i in range(6):
        with pytest.raises(InferenceServerException):
            _infer(client, model, batch, f"bad-{bad}-{i}", dtype)
    sampled = [f"good-{i}" for i in range(50) if request_draw(f"good-{i}") < RATE][:3]
    for request_id in sampled:  # the model still serves, and captures, good requests
        _infer(client, model, good, request_id)
    client.close()
    def captured() -> list:
        parts = [read_chunk(p) for p in chunk_files(directory)]
        return parts if sum(len(p) for p in parts) >= len(sampled) else []

    parts = _wait_for(captured)
    ids = {str(i) for p in parts for i in p.request_id}
    assert ids == set(sampled)  # every file reads back; none of the bad requests is in it
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]


def test_a_model_written_without_capture_captures_once_its_spec_is_brought_up_to_date(server, tmp_path: Path):
    from controller.runtime.serving import TritonServing

    server, manager, model, client = server
    manager.deploy(ModelSpec(name="older", input_dims=INPUT_DIMS), model)  # as written before capture existed
    serving = TritonServing(manager, client)
    settings = {"capture_dir": str(tmp_path / "capture"), "capture_rate": 1.0, "capture_budget_bytes": 2**24,
                "capture_chunk_seconds": 0.3}
    assert serving.ensure_spec_fields("older", settings) is True
    assert serving.ensure_spec_fields("older", settings) is False  # already so: no reload next time
    serving.ensure_loaded(["older"], reload=["older"])
    assert manager.repository.read_spec("older").instance_count == 1
    client.infer("older", to_model_input(np.zeros((2, *INPUT_DIMS[1:], 3), np.uint8)))
    assert _wait_for(lambda: chunk_files(tmp_path / "capture" / "older"))
