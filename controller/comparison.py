"""Run the same deployment under several schedulers, one after the other, on the same camera streams,
and compare the accuracy the cameras measured (the demo and bench/e2e.py).

Every run is real: its own embedded Triton, the controller, one camera-client process per camera and
trainer processes. The cameras reach the controller as remote ones do, over the network only (Triton's
gRPC URL and the directive endpoint, both on fixed free ports written into the run's config), and write
their results into their own directories outside the data directory, from where the comparison reads them. Bootstrap models are trained once and shared, so each run starts from the same
models; the synthetic streams are deterministic, so each run sees the same frames.
"""

from __future__ import annotations

import copy
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from common.atomic import atomic_write_json
from controller.config import DeploymentConfig, parse_config
from controller.layout import DataLayout
from controller.reconcile.records import WindowRecord
from controller.retention import discard_bulk, window_history
from controller.triton.server import free_port, free_port_settings
from controller.window_progress import WindowWatcher
from protocol.camera_results import CameraResults
from trainer.progress import ProgressReporter

log = logging.getLogger(__name__)


@dataclass
class SchedulerRun:
    scheduler: str
    accuracy: dict[int, dict[str, float | None]] = field(default_factory=dict)  # window -> camera -> acc
    requests: int = 0
    failed_requests: int = 0
    shed_requests: int = 0  # turned away by the models' bounded queues
    swaps: int = 0
    failed_swaps: int = 0
    trainer_failures: int = 0
    seconds: float = 0.0
    history: list[WindowRecord] = field(default_factory=list)
    inferred_crops: int = 0  # answered by Triton, all cameras and windows
    streamed_seconds: float = 0.0  # windows x window length
    latency_ms_p50: list[float] = field(default_factory=list)  # per camera and window
    latency_ms_p99: list[float] = field(default_factory=list)

    def inference(self) -> dict:
        """Inference through Triton as the cameras saw it: crops a second (all cameras together) and
        request latency (median of the windows' medians, worst of their 99th percentiles)."""
        p50 = sorted(self.latency_ms_p50)
        return {"crops": self.inferred_crops,
                "crops_per_s": round(self.inferred_crops / self.streamed_seconds, 1) if self.streamed_seconds else None,
                "latency_ms_p50": p50[len(p50) // 2] if p50 else None,
                "latency_ms_p99_worst": max(self.latency_ms_p99) if self.latency_ms_p99 else None}

    def mean(self, windows: list[int] | None = None) -> float | None:
        values = [a for w, cams in self.accuracy.items() if windows is None or w in windows
                  for a in cams.values() if a is not None]
        return sum(values) / len(values) if values else None


def _config_for_run(raw: dict, base_dir: Path, run_dir: Path, scheduler: str) -> tuple[dict, DeploymentConfig]:
    data = copy.deepcopy(raw)
    data.setdefault("scheduler", {})["name"] = scheduler
    data.setdefault("data", {})["dir"] = str(run_dir / "data")
    data.setdefault("metrics", {})["port"] = 0
    directives = data.setdefault("directives", {})
    directives["enabled"] = True  # the cameras' only way to their directive
    # Each run's own endpoints, on free ports (runs side by side) that are fixed in its config, so the
    # cameras are told where they are (and a restarted Triton comes back there).
    directives["port"] = free_port(str(directives.get("address", "127.0.0.1")))
    triton = data.setdefault("triton", {"mode": "embedded"})
    if triton.get("mode", "embedded") == "embedded":
        triton.update(free_port_settings(str(triton.get("address", "127.0.0.1"))))
    config = parse_config(data, base_dir=base_dir, source=str(run_dir / "deployment.yaml"))
    # The run's config file lives elsewhere: its sources are written as validated, paths made absolute.
    for camera in data["cameras"]:
        camera["source"] = config.camera(camera["name"]).source.model_dump(mode="json")
    return data, config


def camera_results(run_dir: Path, cameras: list[str]) -> dict[str, CameraResults]:
    """Each camera client's results directory in a run: beside the run's data directory, not in it."""
    return {name: CameraResults(run_dir / "camera-results" / name) for name in cameras}


def camera_command(config_file: Path, config: DeploymentConfig, name: str, results: CameraResults,
                   windows: int) -> list[str]:
    """`ekya camera` for one of the run's cameras, told both endpoints as a camera on another host is."""
    return [sys.executable, "-m", "controller.cli", "camera", "--config", str(config_file), "--name", name,
            "--triton-url", (f"{_connect_host(config.triton.address)}:{config.triton.grpc_port}"
                             if config.triton.mode == "embedded" else config.triton.url),
            "--controller-url", f"http://{_connect_host(config.directives.address)}:{config.directives.port}",
            "--results", str(results.root), "--windows", str(windows), "--wait-seconds", "900"]


def _connect_host(address: str) -> str:
    return "127.0.0.1" if address in ("0.0.0.0", "::") else address


def run_scheduler(raw: dict, base_dir: Path, work_dir: Path, scheduler: str, windows: int,
                  models_cache: Path) -> SchedulerRun:
    from controller.service import run_controller

    run_dir = work_dir / scheduler
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    data, config = _config_for_run(raw, base_dir, run_dir, scheduler)
    config_file = run_dir / "deployment.yaml"
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))
    layout = DataLayout(Path(config.data.dir))
    results = camera_results(run_dir, config.camera_names)
    cameras: list[subprocess.Popen] = []
    started = time.monotonic()

    try:
        # The cameras start with the controller, so that they make their first window's frames while it
        # starts Triton and loads the models (at 224 px that is tens of seconds of rendering).
        for name in config.camera_names:
            log_file = open(run_dir / f"camera-{name}.log", "wb")
            cameras.append(subprocess.Popen(
                camera_command(config_file, config, name, results[name], windows), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True))
            log_file.close()
        controller = run_controller(config, max_windows=windows, models_cache=models_cache,
                                    bootstrap_progress=False, camera_windows=windows)
    finally:
        deadline = time.monotonic() + 30
        for process in cameras:
            if sys.exc_info()[0] is not None:  # interrupted: do not wait for the cameras' last window
                process.terminate()
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.terminate()
                process.wait(timeout=10)
    run = SchedulerRun(scheduler, seconds=time.monotonic() - started)
    for window in range(windows):
        run.accuracy[window] = {}
        for name in config.camera_names:
            result = results[name].read_window(window) or {}
            run.accuracy[window][name] = result.get("accuracy")
            run.requests += int(result.get("requests", 0))
            run.failed_requests += int(result.get("failed_requests", 0))
            run.shed_requests += int(result.get("shed_requests", 0))
            run.inferred_crops += int(result.get("inferred_crops", 0))
            for key in ("latency_ms_p50", "latency_ms_p99"):
                if result.get(key) is not None:
                    getattr(run, key).append(float(result[key]))
        run.streamed_seconds += config.window_seconds
    state = controller.state
    if state is not None:
        run.swaps, run.failed_swaps, run.trainer_failures = state.swaps, state.failed_swaps, state.trainer_failures
        run.history = window_history(layout, state)
    # the run is over: its records stay (state, window records; the cameras' results beside), its models and data go
    freed = discard_bulk(layout, config.model_repository)
    log.info("%s: run over; %.0f MB of models and data deleted, its records kept in %s", scheduler, freed / 2**20,
             layout.root)
    return run


def run_comparison(config_path: Path, schedulers: list[str], windows: int, work_dir: Path,
                   overrides: dict | None = None) -> list[SchedulerRun]:
    from controller.bootstrap_settings import bootstrap_for

    raw = yaml.safe_load(Path(config_path).read_text())
    for key, value in (overrides or {}).items():
        raw[key] = value
    base_dir = Path(config_path).resolve().parent
    work_dir = Path(work_dir).resolve()
    models_cache = work_dir / "models"
    _, config = _config_for_run(raw, base_dir, work_dir / "bootstrap", schedulers[0])
    print(f"bootstrap: edge {config.edge_model.family} {config.edge_model.input_size}px and golden "
          f"{config.golden_model.family} (cached in {models_cache})", flush=True)
    boot = bootstrap_for(config, progress=True, cache_dir=models_cache)
    print(f"bootstrap {'reused' if boot.reused else 'trained'} in {boot.seconds:.0f}s: "
          + ", ".join(f"{k} {v:.3f}" for k, v in boot.accuracy.items()), flush=True)
    runs = []
    with ProgressReporter("demo") as report:
        for number, scheduler in enumerate(schedulers, 1):
            label = f"scheduler {number}/{len(schedulers)} ({scheduler}):"
            print(f"{label} {len(config.cameras)} cameras x {windows} windows of {config.window_seconds:.0f}s ...",
                  flush=True)
            task = report.task(label, total=windows, unit="window")
            with WindowWatcher(camera_results(work_dir / scheduler, config.camera_names), task):
                run = run_scheduler(raw, base_dir, work_dir, scheduler, windows, models_cache)
            runs.append(run)
            mean = run.mean()
            print(f"  {scheduler}: mean accuracy {'n/a' if mean is None else f'{mean:.3f}'}, {run.swaps} swaps, "
                  f"{run.failed_requests} failed, {run.shed_requests} shed of {run.requests} requests ({run.seconds:.0f}s)", flush=True)
    atomic_write_json(work_dir / "comparison.json", summary(runs, windows))
    return runs


def trainer_jobs(run: SchedulerRun) -> list[dict]:
    """The run's finished retraining jobs: share, the planner's wall time for the job at that share (its
    micro-profiled cost through the throughput curve) against the worker's, and the worker's img/s."""
    rows = []
    for record in run.history:
        for camera, entry in sorted(record.cameras.items()):
            job = entry.job
            if job is None:
                continue
            planned, actual = job.planned_train_seconds, job.train_seconds
            rows.append({"window": record.window, "camera": camera, "config": job.config,
                         "share": job.share, "status": job.status,
                         "planned_seconds": planned, "seconds": actual, "img_per_s": job.img_per_s,
                         "actual_vs_planned": round(actual / planned, 2) if planned and actual else None,
                         # the job's fixed latency: worker start-up, and the new model's export and load
                         "startup_seconds": job.startup_seconds,
                         "publish_seconds": entry.retrained.publish_seconds if entry.retrained else None})
    return rows


def render_trainers(runs: list[SchedulerRun]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="retraining jobs against the planner (wall seconds at the job's share)")
    for column in ("scheduler", "window", "camera", "config", "share", "planned s", "actual s", "actual/planned",
                   "img/s", "start-up s", "publish s"):
        table.add_column(column, justify="left" if column in ("scheduler", "camera", "config") else "right")
    for run in runs:
        for row in trainer_jobs(run):
            table.add_row(run.scheduler, str(row["window"]), row["camera"], str(row["config"]), f"{row['share']:.3f}",
                          *["-" if row[k] is None else f"{row[k]:.1f}" for k in ("planned_seconds", "seconds")],
                          "-" if row["actual_vs_planned"] is None else f"{row['actual_vs_planned']:.2f}",
                          "-" if row["img_per_s"] is None else f"{row['img_per_s']:.0f}",
                          *["-" if row[k] is None else f"{row[k]:.1f}" for k in ("startup_seconds", "publish_seconds")])
    Console().print(table)


def summary(runs: list[SchedulerRun], windows: int) -> dict:
    retrain_windows = list(range(1, windows))
    cameras = sorted({c for run in runs for cams in run.accuracy.values() for c in cams})
    return {
        "cameras": len(cameras),
        "windows": windows,
        "failed_requests": sum(r.failed_requests for r in runs),
        "shed_requests": sum(r.shed_requests for r in runs),
        "requests": sum(r.requests for r in runs),
        "swaps": sum(r.swaps for r in runs),
        "schedulers": {
            r.scheduler: {
                "mean_accuracy": _round(r.mean()),
                "mean_accuracy_retraining_windows": _round(r.mean(retrain_windows)),
                "per_window": {str(w): _round(sum(v for v in cams.values() if v is not None) /
                                              max(1, sum(v is not None for v in cams.values())))
                               for w, cams in r.accuracy.items()},
                "per_camera_window": {str(w): {c: _round(a) for c, a in cams.items()} for w, cams in r.accuracy.items()},
                "swaps": r.swaps, "failed_requests": r.failed_requests, "shed_requests": r.shed_requests, "trainer_failures": r.trainer_failures,
                "trainer_jobs": trainer_jobs(r), "inference": r.inference(),
            }
            for r in runs
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def render_table(runs: list[SchedulerRun]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    cameras = sorted({c for run in runs for cams in run.accuracy.values() for c in cams})
    windows = sorted({w for run in runs for w in run.accuracy})
    table = Table(title="accuracy measured by the cameras, per window (skipped frames keep their track's last prediction)")
    table.add_column("camera")
    table.add_column("scheduler")
    for w in windows:
        table.add_column(f"w{w}", justify="right")
    table.add_column("mean", justify="right")
    for camera in cameras:
        for run in runs:
            values = [run.accuracy.get(w, {}).get(camera) for w in windows]
            known = [v for v in values if v is not None]
            table.add_row(camera, run.scheduler, *["-" if v is None else f"{v:.3f}" for v in values],
                          f"{sum(known) / len(known):.3f}" if known else "-")
        table.add_section()
    for run in runs:
        means = []
        for w in windows:
            vals = [v for v in run.accuracy.get(w, {}).values() if v is not None]
            means.append(sum(vals) / len(vals) if vals else None)
        overall = run.mean()
        table.add_row("all", run.scheduler, *["-" if v is None else f"{v:.3f}" for v in means],
                      "-" if overall is None else f"{overall:.3f}")
    console.print(table)


def plot(runs: list[SchedulerRun], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cameras = sorted({c for run in runs for cams in run.accuracy.values() for c in cams})
    windows = sorted({w for run in runs for w in run.accuracy})
    fig, axes = plt.subplots(1, len(cameras) + 1, figsize=(3.2 * (len(cameras) + 1), 3.2), sharey=True)
    for run in runs:
        mean = []
        for w in windows:
            vals = [v for v in run.accuracy.get(w, {}).values() if v is not None]
            mean.append(sum(vals) / len(vals) if vals else float("nan"))
        axes[0].plot(windows, mean, marker="o", label=run.scheduler)
        for ax, camera in zip(axes[1:], cameras):
            values = [run.accuracy.get(w, {}).get(camera) for w in windows]
            ax.plot(windows, [float("nan") if v is None else v for v in values], marker="o", label=run.scheduler)
    axes[0].set_title("all cameras (mean)")
    for ax, camera in zip(axes[1:], cameras):
        ax.set_title(camera)
    for ax in axes:
        ax.set_xlabel("window")
        ax.set_xticks(windows)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy measured by the camera")
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
