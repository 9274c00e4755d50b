"""The worker process: success, resume, stop, and every failure with its exit code and message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from controller.trainers.launcher import run_worker, start_worker, warm_up
from tests.repo import REPO_ROOT
from trainer.configs import RetrainConfig
from trainer.jobs import (
    EXIT_BAD_DATA,
    EXIT_BAD_JOB,
    EXIT_BAD_MODEL,
    EXIT_OK,
    EXIT_OOM,
    JobError,
    JobResult,
    TrainJob,
)
from trainer.models import build_model, load_model, save_model
from trainer.streams.synthetic import CameraStreamSpec, generate_window

ROOT = REPO_ROOT


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("assets")
    spec = CameraStreamSpec(name="cam0", seed=1, crop_size=32, window_seconds=40)
    w = generate_window(spec, 4)
    w.save(d / "data.npz")
    w.with_labels(np.full(len(w), -1)).save(d / "unlabelled.npz")
    save_model(build_model("shufflenet_v2_x0_5", input_size=32), d / "base.pt")
    return d


def _job(assets: Path, out: Path, **kw) -> TrainJob:
    fields = {"job_id": "j1", "camera": "cam0", "base_checkpoint": assets / "base.pt",
              "data": assets / "data.npz", "config": RetrainConfig(epochs=2, lr=0.02), "share": 0.5,
              "device": "cpu", "output_dir": out}
    fields.update(kw)
    return TrainJob(**fields)


def _run(job_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trainer.worker", str(job_file)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


def _wait_for_first_epoch(handle, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not any(e["event"] == "epoch" for e in handle.events):
        time.sleep(0.05)


def test_worker_trains_and_resumes_after_a_crash(assets, tmp_path):
    out = tmp_path / "out"
    job = _job(assets, out, config=RetrainConfig(epochs=3, lr=0.02))
    handle = start_worker(job)
    _wait_for_first_epoch(handle)
    os.killpg(handle.pid, signal.SIGKILL)  # a crash after at least one epoch
    handle.wait(30)
    assert (out / "state.pt").is_file() and (out / "best.pt").is_file()
    assert not [f for f in out.iterdir() if f.name.endswith(".tmp")]
    res = run_worker(job, timeout=300)
    assert res.status == "ok", res.message
    assert res.epochs_done == 3 and res.best_val_accuracy is not None and res.img_per_s > 0
    assert load_model(res.checkpoint).meta.extra["job_id"] == "j1"
    events = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and "resume" in kinds
    resume = events[kinds.index("resume")]
    assert resume["epoch"] >= 1
    assert [e["epoch"] for e in events[kinds.index("resume"):] if e["event"] == "epoch"][-1] == 3
    assert {"loss", "val_accuracy", "img_per_s"} <= set(events[1])
    worker_log = (out / "worker.log").read_text()
    assert "resumed after epoch" in worker_log and "training epoch 3/3, loss " in worker_log


def test_head_only_job_keeps_a_small_state_and_resumes(assets, tmp_path):
    """Head-only jobs checkpoint only the head every epoch (the backbone is the base checkpoint's), and
    resume from it after a crash; the published model keeps the base backbone."""
    out = tmp_path / "out"
    job = _job(assets, out, config=RetrainConfig(epochs=300, layers="head", lr=0.02))
    handle = start_worker(job)
    _wait_for_first_epoch(handle)
    os.killpg(handle.pid, signal.SIGKILL)  # a crash after at least one epoch
    handle.wait(30)
    base = load_model(assets / "base.pt")
    state = torch.load(out / "state.pt", map_location="cpu", weights_only=True)
    assert state["partial"] and state["model"] and all(k.startswith("head.") for k in state["model"])
    assert (out / "state.pt").stat().st_size < 0.5 * (assets / "base.pt").stat().st_size
    res = run_worker(job, timeout=300)
    assert res.status == "ok", res.message
    assert res.epochs_done == 300
    kinds = [json.loads(line)["event"] for line in (out / "progress.jsonl").read_text().splitlines()]
    assert "resume" in kinds
    trained = load_model(res.checkpoint)
    for key, value in base.backbone.state_dict().items():
        assert torch.equal(trained.backbone.state_dict()[key], value), key
    assert not torch.equal(trained.head[0].weight, base.head[0].weight)


def test_stop_request_is_honoured(assets, tmp_path):
    out = tmp_path / "out"
    handle = start_worker(_job(assets, out, config=RetrainConfig(epochs=200, lr=0.02)))
    _wait_for_first_epoch(handle)
    assert handle.is_running()
    code = handle.stop(timeout=60)
    assert code == EXIT_OK
    res = handle.result()
    assert res.status == "stopped" and res.epochs_done >= 1 and res.epochs_done < 200
    assert res.checkpoint and load_model(res.checkpoint).meta.family == "shufflenet_v2_x0_5"


def test_warm_worker_behaves_like_a_fresh_one(assets, tmp_path):
    """Forked from the fork server (torch already imported): its own session, its log, its environment,
    stop on request, and a failure's exit code, as a worker started with `python -m trainer.worker`."""
    warm_up()
    out = tmp_path / "out"
    env = {**os.environ, "EKYA_TRAINER_THREADS": "1"}
    handle = start_worker(_job(assets, out, config=RetrainConfig(epochs=200, lr=0.02)), env, warm=True)
    _wait_for_first_epoch(handle)
    assert handle.is_running() and handle.pid != os.getpid()
    assert os.getpgid(handle.pid) == handle.pid  # its own process group: signals never reach the controller
    start = next(e for e in handle.events if e["event"] == "start")
    assert start["threads"] == 1  # the job's environment reached the forked worker
    assert handle.stop(timeout=60) == EXIT_OK
    res = handle.result()
    assert res.status == "stopped" and 1 <= res.epochs_done < 200
    worker_log = (out / "worker.log").read_text()
    assert '"event": "epoch"' in worker_log
    assert "trainer j1 (cam0, e200-all-h64-s1-lr0.02): training epoch 1/200, loss " in worker_log  # readable too
    bad = start_worker(_job(assets, tmp_path / "bad", base_checkpoint=assets / "data.npz"), warm=True)
    assert bad.wait(120) == EXIT_BAD_MODEL
    assert bad.result().status == "failed"


def test_warm_start_falls_back_to_a_fresh_process(assets, tmp_path, monkeypatch, caplog):
    """Where no fork server can start (a fault we cannot cause here, hence the stand-in), the job still
    runs, as `python -m trainer.worker`."""
    from controller.trainers import launcher

    class NoForkServer:
        def Process(self, **kwargs):  # noqa: N802 - the multiprocessing context's API
            class Broken:
                def start(self):
                    raise OSError("fork server socket unavailable")
            return Broken()

    monkeypatch.setattr(launcher, "_warm_context", NoForkServer)
    warm_up()  # says so, does not raise: the controller calls it in a background thread
    assert "fork server unavailable" in caplog.text
    handle = start_worker(_job(assets, tmp_path / "out"), warm=True)
    assert isinstance(handle.process, subprocess.Popen)
    assert handle.wait(120) == EXIT_OK and handle.result().status == "ok"


def test_bad_job_files(tmp_path):
    bad = tmp_path / "job.json"
    bad.write_text("{not json")
    p = _run(bad)
    assert p.returncode == EXIT_BAD_JOB and "not valid JSON" in p.stderr
    bad.write_text(json.dumps({"job_id": "x y", "camera": "c", "share": 2, "device": "gpu",
                               "output_dir": str(tmp_path / "o"), "config": {"epochs": 0}}))
    p = _run(bad)
    assert p.returncode == EXIT_BAD_JOB
    for needle in ("job_id", "share", "device", "config.epochs", "base_checkpoint: Field required"):
        assert needle in p.stderr, p.stderr
    assert JobResult.model_validate_json((tmp_path / "o" / "result.json").read_text()).status == "failed"
    p = _run(tmp_path / "missing.json")
    assert p.returncode == EXIT_BAD_JOB and "cannot read job file" in p.stderr
    with pytest.raises(JobError, match="surprise: Extra inputs are not permitted"):
        bad.write_text(json.dumps({"surprise": 1}))
        TrainJob.read(bad)


@pytest.mark.parametrize("case", ["unlabelled", "missing_data", "missing_checkpoint", "corrupt_data",
                                  "wrong_dtype_validation"])
def test_failures_are_reported(assets, tmp_path, case):
    out = tmp_path / "out"
    kw: dict = {}
    if case == "unlabelled":
        kw["data"], code, needle = assets / "unlabelled.npz", EXIT_BAD_DATA, "no labelled crops"
    elif case == "missing_data":
        kw["data"], code, needle = tmp_path / "none.npz", EXIT_BAD_DATA, "not found"
    elif case == "corrupt_data":
        (tmp_path / "junk.npz").write_bytes(b"junk")
        kw["data"], code, needle = tmp_path / "junk.npz", EXIT_BAD_DATA, "not a readable"
    elif case == "wrong_dtype_validation":  # a well-formed .npz whose arrays are wrong: the error names it
        bad = tmp_path / "w000001" / "test.npz"
        bad.parent.mkdir()
        with open(bad, "wb") as fh:
            np.savez(fh, images=np.zeros((4, 8, 8, 3), np.float32), labels=np.zeros(4, np.int64),
                     track_ids=np.arange(4), frame_index=np.arange(4), timestamps=np.zeros(4))
        kw["validation"], code, needle = bad, EXIT_BAD_DATA, f"{bad}: images must be uint8"
    else:
        kw["base_checkpoint"], code, needle = tmp_path / "none.pt", EXIT_BAD_MODEL, "not found"
    job_file = _job(assets, out, **kw).write(tmp_path / "job.json")
    p = _run(job_file)
    assert p.returncode == code, p.stderr
    res = JobResult.model_validate_json((out / "result.json").read_text())
    assert res.status == "failed" and res.exit_code == code and needle in res.message
    assert res.checkpoint is None and not (out / "best.pt").exists()


def test_fallback_thread_rule_leaves_a_core_for_serving(monkeypatch):
    """Outside the controller (no EKYA_TRAINER_THREADS) a worker still never takes every core."""
    from trainer.worker import cpu_threads

    monkeypatch.delenv("EKYA_TRAINER_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert cpu_threads(1.0) == 7 and cpu_threads(0.5) == 4 and cpu_threads(0.01) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert cpu_threads(1.0) == 1  # a single core: one thread, never zero
    monkeypatch.setenv("EKYA_TRAINER_THREADS", "3")
    assert cpu_threads(0.1) == 3  # the controller's choice wins


def test_running_out_of_memory_is_reported_and_leaves_no_model(tmp_path):
    """A real allocation failure: the worker's address space is capped (RLIMIT_AS) a little above what its
    imports take, and its job needs gigabytes (all layers of ResNet18 at 128 px on a batch of 512)."""
    import resource

    probe = subprocess.run([sys.executable, "-c", "import trainer.worker, torch, torchvision, numpy; "
                            "print(open('/proc/self/status').read())"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, check=True)
    peak_kb = next(int(line.split()[1]) for line in probe.stdout.splitlines() if line.startswith("VmPeak:"))
    limit = peak_kb * 1024 + 700 * 2**20
    n, size = 512, 128
    rng = np.random.default_rng(0)
    from trainer.streams.base import WindowData

    WindowData(rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 6, n), np.arange(n),
               np.arange(n), np.arange(n, dtype=float)).save(tmp_path / "big.npz")
    save_model(build_model("resnet18", input_size=size), tmp_path / "base.pt")
    out = tmp_path / "out"
    job = TrainJob(job_id="oom", camera="cam0", base_checkpoint=tmp_path / "base.pt", data=tmp_path / "big.npz",
                   config=RetrainConfig(epochs=1, batch_size=n, layers="all"), share=0.5, device="cpu",
                   output_dir=out)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "trainer.worker", str(job.write(tmp_path / "job.json"))], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, check=False, env=env,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert p.returncode == EXIT_OOM, p.stderr[-2000:]
    res = JobResult.model_validate_json((out / "result.json").read_text())
    assert res.status == "failed" and res.exit_code == EXIT_OOM and "can't allocate memory" in res.message
    assert res.checkpoint is None and not (out / "best.pt").exists()
    assert not [f.name for f in out.iterdir() if f.suffix == ".tmp" or ".tmp" in f.name]  # nothing half-written
