"""`ekya run --config C`: the retraining controller (with an embedded Triton unless configured otherwise)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from controller.planner.schedulers import scheduler_names

    parser.add_argument("--config", type=Path, required=True, help="deployment config (YAML)")
    parser.add_argument("--scheduler", choices=scheduler_names(), help="override the config's scheduler")
    parser.add_argument("--windows", type=int, help="stop after this many windows (default: run until stopped)")
    parser.add_argument("--keep-triton", action="store_true", help="leave the embedded Triton running on exit")
    parser.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    from controller.config import ConfigError, load_config
    from controller.runtime.lock import DeploymentLocked
    from controller.service import run_controller
    from controller.state import StateFileCorrupt
    from controller.user_models import UserModelError
    from sources import SourceError
    from trainer.bootstrap import BootstrapDataError

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        controller = run_controller(config, scheduler=args.scheduler, max_windows=args.windows, stop=stop,
                                    keep_triton=args.keep_triton)
    except (SourceError, BootstrapDataError, UserModelError) as exc:  # a source, or a model file, that cannot serve
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DeploymentLocked as exc:  # refused before touching anything of the running one
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except StateFileCorrupt as exc:  # the state file and its last good copy: the message says the way out
        print(f"error: {exc}", file=sys.stderr)
        return 4
    state = controller.state
    print(f"controller stopped after window {state.window if state else '?'}; "
          f"{state.swaps if state else 0} model swaps, {state.trainer_failures if state else 0} trainer failures")
    return 0
