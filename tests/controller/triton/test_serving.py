"""The serving layer against a real tritonserver on loopback."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from controller.triton.client import TritonClient, TritonClientError
from controller.triton.repository import ModelRepository, RepositoryError
from controller.triton.runtime import TritonRuntime
from controller.triton.server import TritonServer, TritonStartError, free_port
from controller.triton.serving import PublishError, ServingManager
from controller.triton.spec import InvalidModelNameError, ModelSpec, check_model_name, render_config
from tests.triton_helpers import ADMIN_KEY, INPUT_DIMS, export_tiny, running_server

SPEC = ModelSpec(name="cam-a", input_dims=INPUT_DIMS)


@pytest.fixture
def models(tmp_path: Path) -> dict[int, tuple[Path, np.ndarray, np.ndarray]]:
    return {seed: export_tiny(tmp_path / f"m{seed}.onnx", seed) for seed in (1, 2, 3)}


def _load_loop(client: TritonClient, model: str, stop: threading.Event, counts: dict, batch: np.ndarray) -> None:
    while not stop.is_set():
        try:
            out = client.infer(model, batch, timeout_s=10)
            assert out.shape == (batch.shape[0], 6) and np.all(np.isfinite(out))
            counts["ok"] += 1
        except Exception as exc:  # any failure is what these tests look for
            counts["failed"] += 1
            counts.setdefault("errors", []).append(repr(exc))


def _under_load(grpc_url: str, model: str, threads: int = 2):
    stop = threading.Event()
    counts: list[dict] = []
    workers = []
    clients = []
    for i in range(threads):
        client = TritonClient(grpc_url, timeout_s=10)
        clients.append(client)
        counts.append({"ok": 0, "failed": 0})
        batch = np.random.default_rng(i).random((2, *INPUT_DIMS), dtype=np.float32)
        worker = threading.Thread(target=_load_loop, args=(client, model, stop, counts[-1], batch), daemon=True)
        worker.start()
        workers.append(worker)

    def finish() -> tuple[int, int, list[str]]:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        for client in clients:
            client.close()
        return (sum(c["ok"] for c in counts), sum(c["failed"] for c in counts),
                [e for c in counts for e in c.get("errors", [])])

    return finish


def test_serve_and_infer_equals_onnxruntime(tmp_path, triton_runtime, models):
    path, probe, expected = models[1]
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (_, client, serving):
        result = serving.deploy(SPEC, path, probe, expected)
        assert result.version == 1 and result.max_abs_diff is not None and result.max_abs_diff < 1e-4
        direct = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"input": probe})[0]
        served = client.infer("cam-a", probe)
        np.testing.assert_allclose(served, direct, rtol=1e-5, atol=1e-6)
        assert client.served_version("cam-a") == 1
        config = client.model_config("cam-a")
        assert config["backend"] == "ekya_onnx" and config["max_batch_size"] == 64
        stats = client.statistics("cam-a")
        assert stats[0].success_count >= 1 and stats[0].failure_count == 0


def test_hot_swap_under_load_has_no_failed_requests(tmp_path, triton_runtime, models):
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (server, client, serving):
        serving.deploy(SPEC, models[1][0], *models[1][1:])
        finish = _under_load(server.info.grpc_url, "cam-a")
        versions = []
        for i in range(6):
            seed = (2, 3)[i % 2]
            versions.append(serving.publish("cam-a", models[seed][0], *models[seed][1:]).version)
            # Outputs switch when the load returns: the served model is now the new one.
            np.testing.assert_allclose(client.infer("cam-a", models[seed][1]), models[seed][2], atol=1e-4)
            time.sleep(0.1)
        ok, failed, errors = finish()
        assert versions == [2, 3, 4, 5, 6, 7]
        assert failed == 0, errors[:3]
        assert ok > 50
        # Only the last K versions stay on disk.
        assert serving.repository.versions("cam-a") == [5, 6, 7]


def test_scale_instances_under_load_and_persist(tmp_path, triton_runtime, models):
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (server, client, serving):
        serving.deploy(SPEC, models[1][0])
        finish = _under_load(server.info.grpc_url, "cam-a")
        for count in (2, 3, 1, 2):
            assert serving.set_instances("cam-a", count)
            assert client.model_config("cam-a")["instance_group"][0]["count"] == count
            time.sleep(0.2)
        assert not serving.set_instances("cam-a", 2)  # unchanged: no reload
        ok, failed, errors = finish()
        assert failed == 0, errors[:3]
        assert ok > 20
        assert "count: 2" in (tmp_path / "repo" / "cam-a" / "config.pbtxt").read_text()
        assert ModelRepository(tmp_path / "repo").read_spec("cam-a").instance_count == 2


def test_bad_models_are_rejected_and_old_version_keeps_serving(tmp_path, triton_runtime, models):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not an onnx model")
    nan_model = export_tiny(tmp_path / "nan.onnx", 4, nan=True)[0]
    wrong_shape = export_tiny(tmp_path / "wrong.onnx", 5, dims=(3, 8, 8))[0]
    path, probe, expected = models[1]
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (_, client, serving):
        serving.deploy(SPEC, path, probe, expected)
        cases = [
            (garbage, None, None, "not a valid ONNX model"),
            (nan_model, None, None, "non-finite"),
            (wrong_shape, None, None, "shape"),
            (models[2][0], probe, expected, "differs from the reference"),  # wrong reference output
        ]
        for bad, bad_probe, bad_expected, message in cases:
            with pytest.raises(PublishError, match=message):
                serving.publish("cam-a", bad, bad_probe, bad_expected)
            assert serving.repository.versions("cam-a") == [1]  # nothing was written
        np.testing.assert_allclose(client.infer("cam-a", probe), expected, atol=1e-4)


def test_version_that_fails_to_load_is_removed(tmp_path, triton_runtime, models):
    path, probe, expected = models[1]
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (_, client, serving):
        serving.deploy(SPEC, path, probe, expected)
        serving.load_timeout_s = 0.001  # a load that cannot finish in time: a real deadline fault
        with pytest.raises(PublishError, match="failed to load"):
            serving.publish("cam-a", models[2][0])
        serving.load_timeout_s = 30
        assert serving.repository.versions("cam-a") == [1]
        trash = serving.repository.trash_entries()
        assert trash and "load failed" in (trash[0] / "REASON").read_text()
        time.sleep(0.5)
        np.testing.assert_allclose(client.infer("cam-a", probe), expected, atol=1e-4)


def test_rollback_serves_previous_version(tmp_path, triton_runtime, models):
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (_, client, serving):
        serving.deploy(SPEC, models[1][0])
        serving.publish("cam-a", models[2][0])
        np.testing.assert_allclose(client.infer("cam-a", models[2][1]), models[2][2], atol=1e-4)
        assert serving.rollback("cam-a") == 1
        np.testing.assert_allclose(client.infer("cam-a", models[1][1]), models[1][2], atol=1e-4)
        assert client.served_version("cam-a") == 1
        with pytest.raises(RepositoryError, match="no earlier version"):
            serving.rollback("cam-a")


def test_model_control_requires_admin_key_on_grpc_and_http(tmp_path, triton_runtime, models):
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (server, client, serving):
        serving.deploy(SPEC, models[1][0])
        anonymous = TritonClient(server.info.grpc_url, timeout_s=10)
        wrong = TritonClient(server.info.grpc_url, admin_key="wrong", timeout_s=10)
        try:
            for intruder in (anonymous, wrong):
                with pytest.raises(TritonClientError):
                    intruder.unload("cam-a")
                with pytest.raises(TritonClientError):
                    intruder.repository_index()
            # Inference stays open to clients without the key.
            assert anonymous.infer("cam-a", models[1][1]).shape == (4, 6)
        finally:
            anonymous.close()
            wrong.close()
        url = f"{server.info.http_url}/v2/repository/models/cam-a/unload"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=10)
        assert refused.value.code in (400, 401, 403)
        assert client.model_ready("cam-a")
        request = urllib.request.Request(url, data=b"{}", method="POST", headers={"admin-key": ADMIN_KEY})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert not client.model_ready("cam-a")
        assert ADMIN_KEY not in server.log_file.read_text()


def test_restart_serves_repository_as_it_was(tmp_path, triton_runtime, models):
    repo = tmp_path / "repo"
    with running_server(repo, tmp_path / "work", triton_runtime) as (_, _client, serving):
        serving.deploy(SPEC, models[1][0])
        serving.publish("cam-a", models[2][0])
        serving.set_instances("cam-a", 2)
    names = ModelRepository(repo).models()
    with running_server(repo, tmp_path / "work2", triton_runtime, load_models=names) as (_, client, _serving):
        assert client.served_version("cam-a") == 2
        assert client.model_config("cam-a")["instance_group"][0]["count"] == 2
        np.testing.assert_allclose(client.infer("cam-a", models[2][1]), models[2][2], atol=1e-4)


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x" * 64, "golden", "sp ace", "..", "é"])
def test_bad_camera_names_rejected(name):
    with pytest.raises(InvalidModelNameError):
        check_model_name(name)


def test_config_rendering_for_both_backends():
    gpu = ModelSpec(name="cam1", instance_kind="KIND_GPU", gpus=(1,), instance_count=3, backend="onnxruntime")
    text = render_config(gpu)
    assert 'backend: "onnxruntime"' in text and "gpus: [ 1 ]" in text and "count: 3" in text
    assert "intra_op_threads" not in text
    assert 'backend: "ekya_onnx"' in render_config(SPEC)
    with pytest.raises(ValueError):
        ModelSpec(name="cam1", instance_count=0)


def test_capture_settings_render_as_ekya_onnx_parameters_or_the_wrappers():
    capture = dict(capture_dir='/data/cap "x"', capture_rate=0.25, capture_budget_bytes=1000, capture_chunk_seconds=2.0)
    text = render_config(ModelSpec(name="cam1", **capture))
    assert '{ key: "capture_dir", value: { string_value: "/data/cap \\"x\\"" } }' in text
    assert '"capture_rate", value: { string_value: "0.25" }' in text and '"capture_budget_bytes"' in text
    # the native onnxruntime backend cannot capture: the public model is the python wrapper that does
    wrapper = render_config(ModelSpec(name="cam1", backend="onnxruntime", **capture))
    assert 'backend: "python"' in wrapper and '"capture_rate", value: { string_value: "0.25" }' in wrapper
    assert "capture" not in render_config(ModelSpec(name="cam1"))  # off unless a directory is given


def test_clear_start_errors(tmp_path, triton_runtime):
    (tmp_path / "repo").mkdir()
    with pytest.raises(TritonStartError, match="missing or unreadable"):
        TritonServer(tmp_path / "nope", tmp_path / "w", admin_key="k", runtime=triton_runtime).start()
    broken = TritonRuntime(binary=tmp_path / "no-binary", backend_dir=triton_runtime.backend_dir,
                           cache_dir=triton_runtime.cache_dir, library_path=triton_runtime.library_path)
    with pytest.raises(TritonStartError, match="cannot execute"):
        TritonServer(tmp_path / "repo", tmp_path / "w", admin_key="k", runtime=broken).start()
    with pytest.raises(ValueError, match="admin key"):
        TritonServer(tmp_path / "repo", tmp_path / "w", admin_key="")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TritonStartError, match="already in use"):
            TritonServer(tmp_path / "repo", tmp_path / "w", admin_key="k", grpc_port=port,
                         runtime=triton_runtime).start()
    assert free_port() > 0


def test_reattach_to_a_running_server(tmp_path, triton_runtime, models):
    repo = ModelRepository(tmp_path / "repo")
    server = TritonServer(repo.root, tmp_path / "work", admin_key=ADMIN_KEY, runtime=triton_runtime)
    server.start()
    try:
        server.save_info(tmp_path / "server.json")
        attached = TritonServer.attach(tmp_path / "server.json", ADMIN_KEY)
        assert attached is not None and attached.is_running() and attached.info.pid == server.info.pid
        with TritonClient(attached.info.grpc_url, admin_key=ADMIN_KEY) as client:
            ServingManager(repo, client).deploy(SPEC, models[1][0])
            assert client.model_ready("cam-a")
        attached.stop()
        assert not server.is_running()
        assert TritonServer.attach(tmp_path / "server.json", ADMIN_KEY) is None
    finally:
        server.stop()


def test_torch_runtime_serves_the_same_graph_as_onnxruntime(tmp_path, triton_runtime):
    """runtime torch (what GPU instances use where onnxruntime has no CUDA provider): the exported edge
    model converted by onnx2torch, its tensors through DLPack, answers as onnxruntime does."""
    from trainer.export import export_onnx
    from trainer.models import build_model

    path = tmp_path / "edge.onnx"
    export_onnx(build_model("resnet18", 64, 32), path, 32)
    probe = np.random.default_rng(0).random((5, 3, 32, 32), dtype=np.float32)
    direct = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"input": probe})[0]
    spec = ModelSpec(name="cam-t", input_dims=(3, 32, 32), runtime="torch")
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (_, client, serving):
        serving.deploy(spec, path, probe, direct)
        assert client.model_config("cam-t")["parameters"]["runtime"]["string_value"] == "torch"
        for rows in (1, 5):
            np.testing.assert_allclose(client.infer("cam-t", probe[:rows]), direct[:rows], rtol=1e-4, atol=1e-4)


def test_labelling_with_requests_in_flight_answers_as_one_at_a_time(tmp_path, triton_runtime, models):
    from controller.labelling import predict_through_triton

    colours = np.random.default_rng(1).integers(0, 256, (70, 1, 1, 3), dtype=np.uint8)
    images = np.ascontiguousarray(np.broadcast_to(colours, (70, 16, 16, 3)))  # flat crops: classes differ
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (_, client, serving):
        serving.deploy(SPEC, models[1][0], *models[1][1:])
        one = predict_through_triton(client, "cam-a", images, batch_size=8)
        many = predict_through_triton(client, "cam-a", images, batch_size=8, in_flight=4)
        np.testing.assert_array_equal(one, many)
        assert len(set(one.tolist())) > 1  # a real answer, not one class for everything
        with pytest.raises(TritonClientError):
            predict_through_triton(client, "no-such-model", images, batch_size=8, in_flight=4)


def test_requests_batched_together_each_get_their_own_outputs(tmp_path, triton_runtime, models):
    """The backend runs requests the dynamic batcher queued together as one batch and splits the outputs
    back: each request gets the rows of its own input, whatever the batch sizes beside it."""
    path = models[1][0]
    sizes = (1, 2, 3, 5)
    inputs = [np.random.default_rng(i).random((n, *INPUT_DIMS), dtype=np.float32) for i, n in enumerate(sizes)]
    direct = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = [direct.run(["logits"], {"input": batch})[0] for batch in inputs]
    spec = SPEC.model_copy(update={"max_queue_delay_us": 100_000})  # long enough for all four to queue
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (server, client, serving):
        serving.deploy(spec, path)
        results: dict[int, list[np.ndarray]] = {i: [] for i in range(len(sizes))}
        barrier = threading.Barrier(len(sizes))

        def send(index: int) -> None:
            with TritonClient(server.info.grpc_url, timeout_s=30) as own:
                for _ in range(3):
                    barrier.wait(timeout=30)
                    results[index].append(own.infer("cam-a", inputs[index]))

        workers = [threading.Thread(target=send, args=(i,)) for i in range(len(sizes))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        for index, outputs in results.items():
            assert len(outputs) == 3
            for out in outputs:
                np.testing.assert_allclose(out, expected[index], rtol=1e-4, atol=1e-5)
        stats = client.statistics("cam-a")[0]
        assert stats.success_count == 3 * len(sizes)
        assert stats.execution_count < stats.success_count  # some requests really ran batched together


def test_a_model_triton_does_not_batch_gets_its_whole_output_on_the_torch_runtime(tmp_path, triton_runtime):
    """max_batch_size 0 (a user's detector, one frame a call): the output's first dimension is not a batch
    (here [lanes, 6] rows), so the torch runtime (GPU instances) gives it whole, as onnxruntime does (the
    detector tests serve it on onnxruntime)."""
    from tests.sources.detector_helpers import lane_detector_onnx

    path = lane_detector_onnx(tmp_path / "lanes.onnx", np.zeros((1, 3, 64, 64), np.float32),
                              [(0, 20), (20, 40), (40, 64)])
    frame = np.zeros((1, 3, 64, 64), np.float32)
    frame[0, :, 5:15, 10:30] = 1.0
    frame[0, :, 45:60, 3:9] = 1.0
    direct = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": frame})[0]
    assert direct.shape == (3, 6) and direct[:, 4].tolist() == [1.0, 0.0, 1.0]
    spec = ModelSpec(name="gate.detector", input_name="images", input_dims=(1, 3, 64, 64), output_name="detections",
                     output_dims=(3, 6), max_batch_size=0, dynamic_batching=False, runtime="torch")
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (_, client, serving):
        serving.deploy(spec, path)
        served = client.infer(spec.name, frame, input_name="images", output_name="detections")
    np.testing.assert_allclose(served, direct)
