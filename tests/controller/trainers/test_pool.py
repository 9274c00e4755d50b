"""Trainer processes under the controller: shares, results, and no orphans after a controller crash."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from controller.trainers import TrainerPool, kill_orphans
from controller.trainers.cpu_shares import cpu_seconds
from trainer.configs import RetrainConfig
from trainer.models import build_model, save_model
from trainer.streams.synthetic import CameraStreamSpec, generate_window


@pytest.fixture
def job_inputs(tmp_path: Path):
    spec = CameraStreamSpec(name="cam0", seed=3, crop_size=32, fps=5, window_seconds=20, objects_per_frame=4)
    data = generate_window(spec, 1)
    train, test = data.split(0.25, seed=0)
    train.save(tmp_path / "train.npz")
    test.save(tmp_path / "test.npz")
    model = build_model("resnet18", hidden=64, input_size=32)
    save_model(model, tmp_path / "base.pt")
    return tmp_path


def _launch(pool: TrainerPool, inputs: Path, epochs: int, share: float, job_id: str):
    return pool.launch(job_id=job_id, camera="cam0", window=1, config=RetrainConfig(epochs=epochs, layers="all"),
                       base_checkpoint=inputs / "base.pt", data=inputs / "train.npz",
                       validation=inputs / "test.npz", share=share)


def test_job_runs_to_a_result_with_a_checkpoint(job_inputs):
    pool = TrainerPool(job_inputs / "jobs", cores=os.cpu_count() or 1)
    try:
        record = _launch(pool, job_inputs, epochs=2, share=1.0, job_id="ok-job")
        deadline = time.monotonic() + 120
        finished = []
        while not finished and time.monotonic() < deadline:
            finished = pool.poll()
            time.sleep(0.2)
        assert finished and finished[0].record.job_id == record.job_id
        result = finished[0].result
        assert result.status == "ok" and result.epochs_done == 2
        assert result.checkpoint and Path(result.checkpoint).is_file()
        assert 0.0 <= result.best_val_accuracy <= 1.0
    finally:
        pool.close()


def test_stop_all_keeps_a_stopped_result(job_inputs):
    pool = TrainerPool(job_inputs / "jobs", cores=os.cpu_count() or 1)
    try:
        _launch(pool, job_inputs, epochs=200, share=0.5, job_id="long-job")
        time.sleep(6)
        (finished,) = pool.stop_all(timeout_s=20)
        assert finished.result.status == "stopped"
        assert not pool.running()
    finally:
        pool.close()


def test_duty_cycled_trainer_gets_its_share(job_inputs):
    """A trainer at share s of this machine uses about s x cores of CPU (threads x duty cycle)."""
    cores = os.cpu_count() or 1
    share = 0.25
    pool = TrainerPool(job_inputs / "jobs", cores=cores)
    try:
        record = _launch(pool, job_inputs, epochs=500, share=share, job_id="share-job")
        time.sleep(8)  # past torch's import and data loading
        before, start = cpu_seconds(record.pid), time.monotonic()
        time.sleep(4)
        used = (cpu_seconds(record.pid) - before) / (time.monotonic() - start)
        # never more than its share; on a loaded machine (other jobs on these cores) it may get less
        assert 0.25 * share * cores <= used <= share * cores + 0.2, f"{used:.2f} cores for a {share} share of {cores}"
    finally:
        pool.close()


def test_orphans_of_a_crashed_controller_are_killed(job_inputs):
    crashed = TrainerPool(job_inputs / "jobs", cores=os.cpu_count() or 1)
    record = _launch(crashed, job_inputs, epochs=500, share=0.1, job_id="orphan-job")
    # The controller "dies": its pool object is gone, the worker (and its duty-cycle pause) remain.
    crashed.cycler.close()
    time.sleep(1)
    assert Path(f"/proc/{record.pid}").exists()
    killed = kill_orphans({record.job_id: record})
    assert killed == ["orphan-job"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and crashed.handles[record.job_id].is_running():
        time.sleep(0.1)
    assert not crashed.handles[record.job_id].is_running()
    # A pid that is not one of our workers is left alone.
    stranger = record.model_copy(update={"pid": os.getpid(), "job_id": "not-ours"})
    assert kill_orphans({"not-ours": stranger}) == []
