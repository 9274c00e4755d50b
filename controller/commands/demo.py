"""`ekya demo`: a self-contained deployment of synthetic drifting cameras on this machine, run under
thief, fair and noretrain on the same streams, ending with a per-window accuracy table and a plot."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from controller.commands.scheduler_args import scheduler_list

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "deployment.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="deployment config (YAML)")
    parser.add_argument("--windows", type=int, default=4, help="retraining windows per scheduler")
    parser.add_argument("--schedulers", type=scheduler_list, default="thief,fair,noretrain",
                        help="comma-separated schedulers")
    parser.add_argument("--out", type=Path, default=Path(".ekya/demo"), help="working directory")
    parser.add_argument("--log-level", default="WARNING")


def _interrupt_on_sigterm() -> None:
    """A terminated demo unwinds like Ctrl-C, so every run's Triton, cameras and trainers are stopped."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> int:
    from controller.comparison import plot, render_table, run_comparison, summary
    from trainer.progress import show_progress_lines

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    show_progress_lines()  # the bootstrap's and the schedulers' progress, even at the default WARNING
    _interrupt_on_sigterm()
    started = time.monotonic()
    runs = run_comparison(args.config, args.schedulers, args.windows, args.out)
    render_table(runs)
    figure = plot(runs, args.out / "demo.png")
    result = summary(runs, args.windows)
    print(json.dumps({name: s["mean_accuracy"] for name, s in result["schedulers"].items()}))
    print(f"plot: {figure}\nresults: {args.out / 'comparison.json'}\n"
          f"{result['failed_requests']} failed and {result['shed_requests']} shed of {result['requests']} inference requests, {result['swaps']} model swaps; "
          f"demo took {time.monotonic() - started:.0f}s")
    return 0
