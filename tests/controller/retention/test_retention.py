"""controller/retention/ on real files: a data directory with jobs, versions, windows, trials, a big log, window
records and spooled frames brought under its budget, keeping exactly what must be kept; and its disk use on a
real /metrics endpoint."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.layout import DataLayout
from controller.metrics import ControllerMetrics
from controller.reconcile.records import WindowRecord
from controller.retention import Retention, Rules, discard_bulk, window_history
from controller.state import CameraRecord, ControllerState, JobRecord
from controller.triton.repository import ModelRepository
from controller.triton.spec import ModelSpec

WINDOW_S = 100.0
KB = 1024


def write(path: Path, size: int, age_s: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def du(root: Path) -> int:
    return sum((Path(d) / f).lstat().st_size for d, _, files in os.walk(root) for f in files)


class Deployment:
    """Window 10 open (started 50 s ago), window 9 closed; cam0 serves v6 (v1..v6 published), cam1 serves v2
    (rolled back: v1..v5 on disk), a job of window 10 runs from cam0's v3."""

    def __init__(self, root: Path) -> None:
        self.layout = layout = DataLayout(root / "data")
        self.repository = repository = ModelRepository(layout.root / "model_repository", keep_versions=3)
        onnx = write(root / "model.onnx", 64 * KB)
        for model, count in (("cam0", 6), ("cam1", 5), ("golden", 1)):
            repository.write_spec(ModelSpec(name=model))
            for version in range(1, count + 1):
                assert repository.add_version(model, onnx) == version
                if model != "golden":
                    write(layout.checkpoint(model, version), 64 * KB)
        now = time.time()
        running = JobRecord(job_id="cam0-w10-run", camera="cam0", config="c", window=10, job_dir=str(
            layout.jobs_dir / "cam0-w10-run"), share=0.5, started_at=now - 40)
        self.state = ControllerState(
            t0=now - 10 * WINDOW_S - 50, window_seconds=WINDOW_S, window=10, closed=9,
            cameras={"cam0": CameraRecord(serving_version=6, serving_checkpoint=str(layout.checkpoint("cam0", 6))),
                     "cam1": CameraRecord(serving_version=2, serving_checkpoint=str(layout.checkpoint("cam1", 2)))},
            jobs={running.job_id: running})
        self.state.history = [WindowRecord(window=w, scheduler="thief", events=[f"window {w}"]) for w in range(-4, 11)]
        run = layout.jobs_dir / running.job_id
        (run).mkdir(parents=True)
        (run / "job.json").write_text(json.dumps({"base_checkpoint": str(layout.checkpoint("cam0", 3))}))
        write(run / "best.pt", 100 * KB)
        judged = layout.jobs_dir / "cam1-w9-judged"
        write(judged / "best.pt", 100 * KB)
        write(judged / "state.pt", 200 * KB)
        write(judged / "result.json", 300)
        for name in ("job.json", "result.json", "best.pt"):
            write(layout.jobs_dir / "cam0-w5-old" / name, 500, age_s=5 * WINDOW_S)
        for window in range(5, 10):
            for camera in ("cam0", "cam1"):
                write(layout.window_dir(window, camera) / "train.npz", 20 * KB)
        write(layout.trials_dir / "cam0.pt", 64 * KB, age_s=120)  # profiled in window 9
        write(layout.trials_dir / "cam1.pt", 64 * KB, age_s=10)  # profiled in window 10: may still be served
        write(layout.triton_log, 300 * KB)
        for window, chunks in ((9, 1), (10, 3)):
            for index in range(chunks):
                chunk = write(layout.spool_dir("cam0", window) / f"chunk-{index:05d}.npz", 30 * KB,
                              age_s=(10 - window) * WINDOW_S + 10 - index)
                write(chunk.with_suffix(".labels.npy"), 2 * KB)
        for window in range(0, 10):
            write(layout.result_file("cam0", window), 100)
        self.state.save(layout.state_file)

    def retention(self, budget_bytes: int, metrics: ControllerMetrics | None = None) -> Retention:
        rules = Rules(budget_bytes=budget_bytes, keep_versions=3, keep_windows=2, keep_window_records=10,
                      max_log_bytes=100 * KB)
        return Retention(self.layout, self.repository, rules, metrics)


def names(directory: Path, pattern: str = "*") -> set[str]:
    return {p.name for p in directory.glob(pattern)}


def test_a_data_directory_is_brought_under_its_budget_keeping_exactly_what_must_be_kept(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path)
    layout, repository, state = deployment.layout, deployment.repository, deployment.state
    before = du(layout.root)

    first = deployment.retention(budget_bytes=10 * 2**20).enforce(state)  # a roomy budget: retention per kind

    # versions: the newest 3, the serving one (cam1 rolled back to v2), a running job's base (cam0 v3)
    assert repository.versions("cam0") == [3, 4, 5, 6] and names(layout.checkpoints_dir / "cam0") == {
        "v3.pt", "v4.pt", "v5.pt", "v6.pt"}
    assert repository.versions("cam1") == [2, 3, 4, 5] and names(layout.checkpoints_dir / "cam1") == {
        "v2.pt", "v3.pt", "v4.pt", "v5.pt"}
    assert repository.versions("golden") == [1]
    # jobs: the running one whole; the judged one without its checkpoints; the old one gone
    assert names(layout.jobs_dir) == {"cam0-w10-run", "cam1-w9-judged"}
    assert names(layout.jobs_dir / "cam0-w10-run") == {"job.json", "best.pt"}
    assert names(layout.jobs_dir / "cam1-w9-judged") == {"result.json"}
    # windows: the last two closed (the running job trains on window 9); trials: the open window's
    assert names(layout.windows_dir) == {"w000008", "w000009"}
    assert names(layout.trials_dir) == {"cam1.pt"}
    # the Triton log rotated (copy-truncate); camera results and window records: the last 10 windows
    assert layout.triton_log.stat().st_size == 0 and Path(f"{layout.triton_log}.1").stat().st_size == 300 * KB
    assert [r.window for r in state.history] == list(range(1, 11))
    assert [r.window for r in window_history(layout, state)] == list(range(-4, 11))
    assert names(layout.camera_dir("cam0") / "results") == {f"w{w:06d}.json" for w in range(0, 10)}
    # within budget after that: no spooled frame dropped
    assert len(list(layout.spool_root("cam0").rglob("chunk-*.npz"))) == 4
    assert first.plan.spool == [] and first.total_bytes == du(layout.root) < before - 600 * KB

    # a budget that needs 60 KB more: the closed window's chunk, then the open window's oldest, each with its
    # golden labels
    budget = du(layout.root) - 60 * KB
    second = deployment.retention(budget_bytes=budget).enforce(state)
    assert second.plan.spool == [layout.spool_dir("cam0", 9) / "chunk-00000.npz",
                                 layout.spool_dir("cam0", 10) / "chunk-00000.npz"]
    assert names(layout.spool_dir("cam0", 10)) == {f"chunk-0000{i}.{e}" for i in (1, 2) for e in ("npz", "labels.npy")}
    assert not layout.spool_dir("cam0", 9).exists() or not any(layout.spool_dir("cam0", 9).iterdir())
    assert du(layout.root) <= budget and second.total_bytes <= budget
    assert set(second.plan.freed) == {"spool"}  # nothing else went a second time

    # what must be kept is over a budget by itself: the open window's frames are not dropped for nothing
    third = deployment.retention(budget_bytes=100 * KB).enforce(state)
    assert third.plan.spool == [] and third.plan.over_budget_bytes > 0
    assert len(list(layout.spool_dir("cam0", 10).glob("chunk-*.npz"))) == 2


def test_a_crash_between_archiving_and_saving_leaves_each_window_record_read_once(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path)
    layout = deployment.layout
    deployment.retention(budget_bytes=2**30).enforce(deployment.state)  # archived; the state not saved (a crash)
    on_disk = ControllerState.load(layout.state_file)
    assert on_disk is not None and len(on_disk.history) == 15
    with open(layout.windows_log, "a") as handle:
        handle.write('{"window": 99, "sched')  # and a line cut by the crash
    assert [r.window for r in window_history(layout, on_disk)] == list(range(-4, 11))


def test_disk_use_is_exported_on_the_metrics_endpoint(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path)
    metrics = ControllerMetrics(gpu_telemetry=False)
    server = metrics.serve(0, "127.0.0.1")
    try:
        done = deployment.retention(budget_bytes=5 * 2**20, metrics=metrics).enforce(deployment.state)
        with urllib.request.urlopen(server.url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("ekya_data_dir_bytes", ())] == du(deployment.layout.root) == done.total_bytes
    assert samples[("ekya_disk_budget_bytes", ())] == 5 * 2**20
    kinds = {dict(labels)["kind"]: v for (name, labels), v in samples.items() if name == "ekya_data_dir_kind_bytes"}
    assert sum(kinds.values()) == done.total_bytes
    assert kinds["jobs"] == du(deployment.layout.jobs_dir) and kinds["spool"] == du(deployment.layout.root / "cameras"
                                                                                   ) - 10 * 100
    assert kinds["logs"] == 300 * KB + deployment.layout.windows_log.stat().st_size
    deleted = samples[("ekya_retention_deleted_bytes_total", (("kind", "checkpoints"),))]
    assert deleted == 3 * 64 * KB  # cam0 v1, v2 and cam1 v1


@pytest.mark.parametrize("inside", [True, False])
def test_a_finished_run_keeps_its_records_only(tmp_path: Path, inside: bool) -> None:
    deployment = Deployment(tmp_path)
    layout = deployment.layout
    repository_root = deployment.repository.root
    if not inside:
        outside = tmp_path / "elsewhere"
        os.rename(repository_root, outside)
        repository_root = outside
    freed = discard_bulk(layout, repository_root)
    assert freed > 1024 * KB
    assert names(layout.root) == {"cameras", "state.json", "triton"}
    assert names(layout.triton_dir) == {"tritonserver.log"}
    assert names(layout.camera_dir("cam0")) == {"results"}
    assert repository_root.is_dir() != inside  # an external repository is not the run's to delete
