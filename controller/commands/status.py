"""`ekya status --config C`: cameras, serving versions, live accuracy, shares, running jobs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="deployment config (YAML)")
    parser.add_argument("--json", action="store_true", help="print the raw state as JSON")


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from controller.config import ConfigError, load_config
    from controller.layout import DataLayout
    from controller.state import ControllerState, StateFileCorrupt

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    layout = DataLayout(Path(config.data.dir))
    try:
        state = ControllerState.load(layout.state_file)  # a corrupt one: logged, and its last good copy shown
    except StateFileCorrupt as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    if state is None:
        print(f"no controller state at {layout.state_file}: has `ekya run` been started?", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_as_json(state), indent=2))
        return 0
    console = Console()
    now = time.time()
    in_window = (now - state.t0) - max(0, state.window) * state.window_seconds
    console.print(f"window {state.window} ({in_window:.0f}s of {state.window_seconds:.0f}s), "
                  f"{state.swaps} swaps ({state.failed_swaps} failed), {state.trainer_failures} trainer failures")
    table = Table(title="cameras")
    for column in ("camera", "version", "accuracy (held-out)", "window accuracy", "captured", "inference share",
                   "stride", "instances", "training share", "config"):
        table.add_column(column)
    for name, cam in state.cameras.items():
        version = str(cam.serving_version) + (f" (=v{cam.serving_origin})" if cam.serving_origin else "")
        table.add_row(name, version, _fmt(cam.serving_accuracy), _fmt(cam.live_accuracy), str(cam.captured),
                      _fmt(cam.inference_share, ".2f"), str(cam.stride), str(cam.instances),
                      _fmt(cam.training_share, ".2f"), cam.config or "-")
    console.print(table)
    if state.jobs:
        jobs = Table(title="running trainers")
        for column in ("job", "camera", "config", "share", "pid", "running for"):
            jobs.add_column(column)
        for job in state.jobs.values():
            jobs.add_row(job.job_id, job.camera, job.config, f"{job.share:.2f}", str(job.pid),
                         f"{now - job.started_at:.0f}s")
        console.print(jobs)
    else:
        console.print("no trainers running")
    _print_rollbacks(console, state, layout)
    return 0


def _as_json(state) -> dict:
    """The state, each camera led by its serving `version` and the crops `captured` for it so far."""
    payload = json.loads(state.model_dump_json())
    payload["cameras"] = {name: {"version": cam["serving_version"], "captured": cam["captured"], **cam}
                          for name, cam in payload["cameras"].items()}
    return payload


def _print_rollbacks(console, state, layout) -> None:
    """The latest rollbacks (`ekya rollback`, automatic) and the requests still queued."""
    from rich.table import Table

    from controller.rollback_requests import RollbackQueue

    if state.rollbacks:
        table = Table(title="latest rollbacks")
        for column in ("when", "camera", "reason", "from", "to", "as", "outcome"):
            table.add_column(column)
        for rollback in state.rollbacks[-5:]:
            table.add_row(time.strftime("%H:%M:%S", time.localtime(rollback.at)), rollback.camera, rollback.reason,
                          f"v{rollback.from_version}", f"v{rollback.to_version}",
                          "-" if rollback.version is None else f"v{rollback.version}", rollback.error or "done")
        console.print(table)
    queued = RollbackQueue(layout).pending(set_aside=False)  # (only the controller moves files)
    if queued:
        console.print(f"{len(queued)} rollback request(s) queued: " + ", ".join(
            f"{request.camera} to v{request.to_version}" for _, request in queued))
