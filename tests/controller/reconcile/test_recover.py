"""A restarted controller settles the trainers its predecessor recorded as running: a job that finished
while no controller ran is judged (and its better model published) from what it left on disk, one still
running is killed, one that died without a result is recorded as failed with its reason."""

from __future__ import annotations

import json
from pathlib import Path

from controller.state import JobRecord
from tests.controller.reconcile.fakes import FakeTrainers, Harness, make_harness
from trainer.configs import RetrainConfig
from trainer.jobs import BEST_FILE, JOB_FILE, PROGRESS_FILE, RESULT_FILE, JobResult, TrainJob


class RestartedTrainers(FakeTrainers):
    """A new controller's pool: of the recorded jobs, only those in `running` still have a process."""

    def __init__(self, root: Path, running: set[str]) -> None:
        super().__init__(root)
        self.running_ids = running

    def kill_orphans(self, records: dict[str, JobRecord]) -> list[str]:
        killed = [job_id for job_id in records if job_id in self.running_ids]
        self.killed.extend(killed)
        return killed


def _crashed_in_window_1(tmp_path: Path) -> Harness:
    """Window 0 streamed and closed, window 1 planned with a job per camera; then the controller dies."""
    harness = make_harness(tmp_path)
    harness.enter_window(0)
    for camera in ("cam0", "cam1"):
        harness.spool(camera, 0, chunk=0)
        harness.spool(camera, 0, chunk=1)
    harness.enter_window(1)
    assert {r.camera for r in harness.state.jobs.values()} == {"cam0", "cam1"}
    return harness


def _finish_on_disk(harness: Harness, camera: str, accuracy: float, *, job_file: bool = True) -> JobRecord:
    """What a worker leaves when it finishes: job file, progress, best checkpoint, result (written last)."""
    record = next(r for r in harness.state.jobs.values() if r.camera == camera)
    job_dir = Path(record.job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    if job_file:
        TrainJob(job_id=record.job_id, camera=camera, base_checkpoint=Path(harness.state.cameras[camera].serving_checkpoint),
                 data=harness.scope.layout.window_dir(0, camera) / "train.npz",
                 validation=harness.scope.layout.window_dir(0, camera) / "test.npz",
                 config=RetrainConfig.from_name(record.config), share=record.share,
                 output_dir=job_dir).write(job_dir / JOB_FILE)
    (job_dir / PROGRESS_FILE).write_text(json.dumps({"event": "start", "time": record.started_at + 0.7}) + "\n")
    (job_dir / BEST_FILE).write_bytes(b"retrained weights")
    result = JobResult(job_id=record.job_id, status="ok", best_val_accuracy=accuracy, epochs_done=2, seconds=4.0,
                       checkpoint=str(job_dir / BEST_FILE), message="trained 2 epoch(s)")
    (job_dir / RESULT_FILE).write_text(result.model_dump_json())
    return record


def _failures(harness: Harness, camera: str, reason: str) -> float:
    return harness.scope.metrics.registry.get_sample_value(
        "ekya_trainer_failures_total", {"camera": camera, "reason": reason}) or 0.0


def test_a_job_that_finished_while_no_controller_ran_is_judged_and_published(tmp_path: Path) -> None:
    first = _crashed_in_window_1(tmp_path)
    finished = _finish_on_disk(first, "cam0", 0.9)
    still_running = next(r for r in first.state.jobs.values() if r.camera == "cam1")

    trainers = RestartedTrainers(tmp_path / "jobs", running={still_running.job_id})
    second = make_harness(tmp_path, trainers=trainers)

    # the finished job: judged against the serving model measured on its held-out data (0.5), published
    cam0 = second.state.cameras["cam0"]
    assert second.serving.published == [("cam0", 2)] and cam0.serving_version == 2 and cam0.serving_accuracy == 0.9
    assert Path(cam0.serving_checkpoint).read_bytes() == b"retrained weights"
    entry = second.state.record_for(1).cameras["cam0"]
    assert entry.job is not None and entry.job.job_id == finished.job_id and entry.job.status == "ok"
    assert entry.job.startup_seconds == 0.7
    assert entry.retrained is not None and entry.retrained.version == 2 and entry.retrained.replaced_accuracy == 0.5
    assert second.state.job_latency_seconds is None  # its wall time includes the controller's downtime
    # the one still running: killed, recorded as failed with its reason
    assert trainers.killed == [still_running.job_id]
    assert "still running when the controller restarted: killed" in second.state.record_for(1).cameras["cam1"].decision
    assert _failures(second, "cam1", "killed") == 1 and second.state.trainer_failures == 1
    # settled and persisted: a third start has nothing left to adopt
    assert not second.state.jobs
    saved = type(second.state).load(second.scope.layout.state_file)
    assert not saved.jobs and saved.cameras["cam0"].serving_version == 2


def test_a_finished_job_is_judged_on_its_held_out_data_and_a_dead_one_is_recorded_failed(tmp_path: Path) -> None:
    first = _crashed_in_window_1(tmp_path)
    # The recorded serving accuracy is stale (0.3); measured again on the held-out data of window 0 (found
    # without a job file, from the data layout) the serving model scores 0.5, which 0.45 does not beat.
    first.state.cameras["cam0"].serving_accuracy = 0.3
    first.scope.save()
    _finish_on_disk(first, "cam0", 0.45, job_file=False)
    dead = next(r for r in first.state.jobs.values() if r.camera == "cam1")  # no result, no process

    second = make_harness(tmp_path, trainers=RestartedTrainers(tmp_path / "jobs", running=set()))

    assert not second.serving.published and second.state.cameras["cam0"].serving_version == 1
    kept = second.state.record_for(1).cameras["cam0"].retrained
    assert kept is not None and kept.version is None and "0.450 <= 0.500" in kept.decision
    decision = second.state.record_for(1).cameras["cam1"].decision
    assert dead.job_id in decision and "died without a result" in decision and "worker.log" in decision
    assert _failures(second, "cam1", "killed") == 1 and not second.state.jobs


def test_a_job_killed_mid_training_has_its_best_checkpoint_so_far_judged(tmp_path: Path) -> None:
    """Killed with its controller after two epochs: no result, but best.pt and the epochs' progress lines."""
    first = _crashed_in_window_1(tmp_path)
    record = next(r for r in first.state.jobs.values() if r.camera == "cam0")
    job_dir = Path(record.job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    lines = [{"event": "start", "time": record.started_at + 0.5},
             {"event": "epoch", "epoch": 1, "best_val_accuracy": 0.7},
             {"event": "epoch", "epoch": 2, "best_val_accuracy": 0.85}]
    (job_dir / PROGRESS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"event": "ep')
    (job_dir / BEST_FILE).write_bytes(b"best so far")

    second = make_harness(tmp_path, trainers=RestartedTrainers(tmp_path / "jobs", running=set()))

    cam0 = second.state.cameras["cam0"]
    assert second.serving.published == [("cam0", 2)] and cam0.serving_accuracy == 0.85
    assert Path(cam0.serving_checkpoint).read_bytes() == b"best so far"
    entry = second.state.record_for(1).cameras["cam0"]
    assert entry.job.status == "stopped" and entry.job.epochs_done == 2
    assert _failures(second, "cam0", "killed") == 0
