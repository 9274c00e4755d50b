"""`ekya simulate`: offline what-if simulation of schedulers on profiles."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from controller.planner.schedulers import compared_scheduler_names, scheduler_names

    parser.add_argument("--profiles", required=True, metavar="FILE.csv",
                        help="camera,window,config,start_accuracy,end_accuracy,gpu_seconds"
                             "[,predicted_end_accuracy,predicted_gpu_seconds]")
    parser.add_argument("--gpus", type=int, required=True, help="number of GPUs")
    parser.add_argument("--window", type=float, default=200.0, help="retraining window in seconds (200)")
    parser.add_argument("--delta", type=float, default=0.1, help="thief's steal step in GPU share (0.1)")
    parser.add_argument("--scheduler", default="thief", choices=[*scheduler_names(), "all"],
                        help=f"all = {', '.join(compared_scheduler_names())}")
    parser.add_argument("--plan-with", choices=["predicted", "actual"], default="actual",
                        help="plan on the predicted columns (execute the actual ones) or on the actual ones")
    parser.add_argument("--inference-profile", metavar="FILE",
                        help="JSON {strides, factors, full_share} or CSV stride,factor (default: the original's)")
    parser.add_argument("--throughput-profile", metavar="FILE.json",
                        help='measured training share curve {"shares": {"1.0": img_s, "0.5": ...}} (default linear)')
    parser.add_argument("--fixed-config", help="fair/uniform's config (default: the config of median mean cost)")
    parser.add_argument("--inference-fraction", type=float, default=None,
                        help="fair/uniform's share of the GPUs for inference (0.5; uniform: 0.3/0.5/0.9)")
    parser.add_argument("--a-min", type=float, default=0.0, help="thief's floor on inference accuracy (0)")
    parser.add_argument("--no-replan", action="store_true",
                        help="thief does not re-plan on completions (the equal split instead)")
    parser.add_argument("--json", action="store_true", help="print JSON (a list with --scheduler all)")
    parser.add_argument("--plot", metavar="DIR", help="write allocation/accuracy-over-time PNGs per window")


def settings_from_args(args: argparse.Namespace):
    from controller.planner.profiles import InferenceProfile
    from controller.planner.simulator import SimSettings
    from controller.profiles_io import load_inference_profile, load_throughput_profile

    if args.gpus < 1:
        raise ValueError("--gpus must be >= 1")
    if args.window <= 0 or args.delta <= 0:
        raise ValueError("--window and --delta must be > 0")
    thr = load_throughput_profile(args.throughput_profile) if getattr(args, "throughput_profile", None) else None
    if getattr(args, "inference_profile", None):
        inf = load_inference_profile(args.inference_profile)
    else:
        inf = InferenceProfile()
    kw = {}
    if thr is not None:
        kw["throughput"] = thr
    return SimSettings(gpus=args.gpus, window=args.window, delta=args.delta,
                       plan_with=getattr(args, "plan_with", "actual"), inference=inf,
                       fixed_config=getattr(args, "fixed_config", None),
                       inference_fraction=getattr(args, "inference_fraction", None),
                       replan=not getattr(args, "no_replan", False), a_min=getattr(args, "a_min", 0.0), **kw)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from controller.planner.schedulers import compared_scheduler_names
    from controller.planner.simulator import default_fixed_config, simulate
    from controller.profiles_io import ProfileError, has_predictions, load_profiles_csv

    try:
        profiles = load_profiles_csv(args.profiles)
        settings = settings_from_args(args)
    except (ProfileError, ValueError) as e:
        print(f"ekya simulate: error: {e}", file=sys.stderr)
        return 2
    if args.plan_with == "predicted" and not has_predictions(profiles):
        print("ekya simulate: error: --plan-with predicted needs columns predicted_end_accuracy and "
              "predicted_gpu_seconds", file=sys.stderr)
        return 2
    if settings.fixed_config is None:
        settings = replace(settings, fixed_config=default_fixed_config(profiles))
    scheds = compared_scheduler_names() if args.scheduler == "all" else (args.scheduler,)
    results = [simulate(profiles, s, settings, record=bool(args.plot)) for s in scheds]
    if args.plot:
        _plot(results, Path(args.plot))
    if args.json:
        out = [r.to_json() for r in results]
        print(json.dumps(out if args.scheduler == "all" else out[0], indent=1))
    else:
        _table(results, settings)
    return 0


def _table(results, settings) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"ekya simulate: {settings.gpus} GPU(s), window {settings.window:g} s, "
                        f"plan with {settings.plan_with}")
    table.add_column("scheduler")
    wins = [w.window for w in results[0].windows] if results else []
    for w in wins:
        table.add_column(f"w{w}", justify="right")
    table.add_column("mean", justify="right", style="bold")
    table.add_column("plan s", justify="right")
    for r in results:
        table.add_row(r.scheduler, *[f"{w.mean_accuracy:.3f}" for w in r.windows], f"{r.mean_accuracy:.4f}",
                      f"{r.plan_seconds:.3f}")
    console.print(table)
    if len(results) == 1 and results[0].windows:
        last = results[0].windows[0]
        t = Table(title=f"{results[0].scheduler}: window {last.window} allocation at start")
        for col in ("camera", "config", "inference", "training", "accuracy", "inf dev", "train dev"):
            t.add_column(col)
        allocs = last.plan.by_camera()
        for name, acc in zip(last.outcome.cameras, last.outcome.accuracies):
            a = allocs[name]
            t.add_row(name, a.config or "-", f"{a.inference_share:.3f}", f"{a.training_share:.3f}", f"{acc:.3f}",
                      str(a.inference_device if a.inference_device is not None else "-"),
                      str(a.training_device if a.training_device is not None else "-"))
        console.print(t)


def _plot(results, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    for r in results:
        for w in r.windows:
            segs = w.outcome.segments
            names = w.outcome.cameras
            if not segs:
                continue
            times = [s.t0 for s in segs] + [segs[-1].t1]
            fig, ax = plt.subplots(figsize=(9, 4.5))
            bottom = [0.0] * len(segs)
            for k, name in enumerate(names):
                for kind, idx in (("inf", 0), ("train", 1)):
                    vals = [(s.inference_shares if idx == 0 else s.training_shares)[k] for s in segs]
                    top = [b + v for b, v in zip(bottom, vals)]
                    ax.fill_between(times, bottom + [bottom[-1]], top + [top[-1]], step="post",
                                    alpha=0.85 if idx == 0 else 0.45, label=f"{name} {kind}", linewidth=0)
                    bottom = top
            ax.set_xlabel("time in window (s)")
            ax.set_ylabel("GPU share")
            ax.set_title(f"{r.scheduler}: allocation, window {w.window}")
            if len(names) <= 8:
                ax.legend(fontsize=6, ncol=2, loc="upper right")
            fig.tight_layout()
            fig.savefig(out / f"{r.scheduler}_w{w.window}_allocation.png", dpi=90)
            plt.close(fig)
            fig, ax = plt.subplots(figsize=(9, 4.5))
            for k, name in enumerate(names):
                vals = [s.accuracies[k] for s in segs]
                ax.step(times, vals + [vals[-1]], where="post", label=name, linewidth=1)
            mean = [sum(s.accuracies) / len(s.accuracies) for s in segs]
            ax.step(times, mean + [mean[-1]], where="post", label="mean", color="black", linewidth=2.5)
            ax.set_xlabel("time in window (s)")
            ax.set_ylabel("inference accuracy")
            ax.set_ylim(0, 1)
            ax.set_title(f"{r.scheduler}: accuracy, window {w.window} (mean {w.mean_accuracy:.3f})")
            if len(names) <= 8:
                ax.legend(fontsize=6, ncol=2, loc="lower right")
            fig.tight_layout()
            fig.savefig(out / f"{r.scheduler}_w{w.window}_accuracy.png", dpi=90)
            plt.close(fig)
