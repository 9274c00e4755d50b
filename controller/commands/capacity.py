"""`ekya capacity`: per scheduler, the fewest GPUs holding a target accuracy and the most cameras each
GPU count supports (the paper's Table 2)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from controller.commands.scheduler_args import scheduler_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profiles", required=True, metavar="FILE.csv")
    parser.add_argument("--schedulers", type=scheduler_list, default=None, metavar="S1,S2",
                        help="comma-separated schedulers (default: those simulate's `all` runs)")
    parser.add_argument("--target-accuracy", type=float, default=0.75)
    parser.add_argument("--max-gpus", type=int, default=8)
    parser.add_argument("--window", type=float, default=200.0)
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--plan-with", choices=["predicted", "actual"], default="actual")
    parser.add_argument("--inference-profile", metavar="FILE")
    parser.add_argument("--throughput-profile", metavar="FILE.json")
    parser.add_argument("--fixed-config")
    parser.add_argument("--inference-fraction", type=float, default=None)
    parser.add_argument("--replan", action="store_true",
                        help="thief re-plans on completions (slower; default: the equal split)")
    parser.add_argument("--json", action="store_true")


def capacity(profiles, settings, target: float, max_gpus: int,
             schedulers: Sequence[str] | None = None) -> dict:
    """{scheduler: {"min_gpus": int|None, "accuracy_by_gpus": {g: acc}, "max_cameras": {g: k}}}.

    max_cameras[g]: the largest k such that the first k cameras (by name) hold the target on g GPUs.
    schedulers: default, those compared by default (Scheduler.in_comparisons)."""
    from dataclasses import replace

    from controller.planner.schedulers import compared_scheduler_names
    from controller.planner.simulator import simulate, subset

    if schedulers is None:
        schedulers = compared_scheduler_names()

    n = len({c.name for wp in profiles for c in wp.cameras})
    out = {}
    for sched in schedulers:
        acc_by_g, max_cams, min_g = {}, {}, None
        for g in range(1, max_gpus + 1):
            s = replace(settings, gpus=g)
            acc = simulate(profiles, sched, s).mean_accuracy
            acc_by_g[g] = round(acc, 6)
            if min_g is None and acc >= target:
                min_g = g
            best = 0
            for k in range(1, n + 1):
                if k == n:
                    ok = acc >= target
                else:
                    ok = simulate(subset(profiles, k), sched, s).mean_accuracy >= target
                if ok:
                    best = k
            max_cams[g] = best
        out[sched] = {"min_gpus": min_g, "accuracy_by_gpus": acc_by_g, "max_cameras": max_cams}
    return out


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from controller.commands.simulate import settings_from_args
    from controller.planner.simulator import default_fixed_config
    from controller.profiles_io import ProfileError, load_profiles_csv

    try:
        profiles = load_profiles_csv(args.profiles)
        args.gpus = 1
        args.no_replan = not args.replan
        args.a_min = 0.0
        settings = settings_from_args(args)
    except (ProfileError, ValueError) as e:
        print(f"ekya capacity: error: {e}", file=sys.stderr)
        return 2
    if args.max_gpus < 1:
        print("ekya capacity: error: --max-gpus must be >= 1", file=sys.stderr)
        return 2
    if settings.fixed_config is None:
        settings = replace(settings, fixed_config=default_fixed_config(profiles))
    res = capacity(profiles, settings, args.target_accuracy, args.max_gpus, args.schedulers)
    if args.json:
        print(json.dumps({"target_accuracy": args.target_accuracy, "max_gpus": args.max_gpus, "schedulers": res},
                         indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"capacity at accuracy >= {args.target_accuracy:g}: max cameras per GPU count")
    t.add_column("scheduler")
    t.add_column("fewest GPUs", justify="right")
    for g in range(1, args.max_gpus + 1):
        t.add_column(f"{g} GPU", justify="right")
    for sched, r in res.items():
        t.add_row(sched, str(r["min_gpus"]) if r["min_gpus"] else f">{args.max_gpus}",
                  *[str(r["max_cameras"][g]) for g in range(1, args.max_gpus + 1)])
    Console().print(t)
    return 0
