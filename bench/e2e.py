"""End-to-end benchmark: the demo's comparison, the same cameras and seeds for every scheduler.

    python bench/e2e.py [--quick] [--config examples/deployment.yaml] [--windows 4] [--json]

Each scheduler runs the real system (embedded Triton, camera clients, controller, trainer processes) on
the same deterministic synthetic streams, one after the other. The cameras reach Triton and the
controller's directive endpoint by URL only, as remote cameras do. The accuracy is what the cameras
measured (objects in skipped frames keep their track's last prediction), read from each camera's own
results directory (<out>/<scheduler>/camera-results/<camera>), never from the data directory. "mean_accuracy" is over all windows;
"mean_accuracy_retraining_windows" over windows 1..N-1 (window 0 has no closed window to retrain on; a
scheduler that profiles during the window still adapts within it).
`--repeat K` runs the whole comparison K times on the same streams and bootstrap and reports each
scheduler's mean over the runs with its spread ("runs", "mean_accuracy_sd"): one run's difference
between two schedulers is good to about +-2 points on the 2-core demo.
Last line: JSON {"cameras", "windows", "failed_requests", "swaps", "schedulers": {NAME: {"mean_accuracy", ...}}}.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe  # noqa: E402
from controller.comparison import render_table, render_trainers, run_comparison, summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "deployment.yaml")
    parser.add_argument("--windows", type=int, default=None, help="windows per scheduler (default 4, quick 3)")
    parser.add_argument("--quick", action="store_true", help="2 cameras, 3 shorter windows")
    parser.add_argument("--schedulers", default="thief,fair,noretrain")
    parser.add_argument("--out", type=Path, default=ROOT / ".ekya" / "bench-e2e")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--log-file", type=Path, help="also write the controller's INFO log here")
    parser.add_argument("--repeat", type=int, default=1, help="run the comparison this many times (default 1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.log_file is not None:
        handler = logging.FileHandler(args.log_file)
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger().handlers[0].setLevel(logging.WARNING)  # the console keeps to warnings
    from controller.commands.demo import _interrupt_on_sigterm

    _interrupt_on_sigterm()
    windows = args.windows or (3 if args.quick else 4)
    overrides = None
    if args.quick:
        import yaml

        raw = yaml.safe_load(args.config.read_text())
        overrides = {"cameras": raw["cameras"][:2], "window_seconds": min(20, raw.get("window_seconds", 20))}
    started = time.monotonic()
    schedulers = [s.strip() for s in args.schedulers.split(",")]
    repeats = []
    for repeat in range(max(1, args.repeat)):
        if args.repeat > 1:
            print(f"== run {repeat + 1} of {args.repeat}", flush=True)
        runs = run_comparison(args.config, schedulers, windows, args.out, overrides=overrides)
        repeats.append(summary(runs, windows))
    result = repeats[-1] if len(repeats) == 1 else combine(repeats)
    result["machine"] = describe()
    result["seconds"] = round(time.monotonic() - started, 1)
    if not args.json:
        print(f"machine: {result['machine']}")
        render_table(runs)  # the last run's
        render_trainers(runs)
        for name, s in result["schedulers"].items():
            print(f"{name:>10}: mean accuracy {s['mean_accuracy']}, over retraining windows "
                  f"{s['mean_accuracy_retraining_windows']}, {s['swaps']} swaps, {s['failed_requests']} failed requests")
            if "runs" in s:
                print(f"{'':>10}  over {len(s['runs'])} runs: {s['runs']} (sd {s['mean_accuracy_sd']})")
            inf = s["inference"]
            print(f"{'':>10}  inference through Triton: {inf['crops']} crops, {inf['crops_per_s']} crops/s (all "
                  f"cameras), request latency p50 {inf['latency_ms_p50']} ms, worst window p99 "
                  f"{inf['latency_ms_p99_worst']} ms")
    print(json.dumps(result))
    return 0 if result["failed_requests"] == 0 else 1


def combine(repeats: list[dict]) -> dict:
    """Several comparisons' summaries as one: each scheduler's accuracies averaged over the runs (with the
    per-run means and their spread), counts summed; the last run's details kept."""
    result = dict(repeats[-1])
    for key in ("failed_requests", "requests", "swaps"):
        result[key] = sum(r[key] for r in repeats)
    result["schedulers"] = {}
    for name, last in repeats[-1]["schedulers"].items():
        merged = dict(last)
        for key in ("mean_accuracy", "mean_accuracy_retraining_windows"):
            values = [r["schedulers"][name][key] for r in repeats if r["schedulers"][name][key] is not None]
            merged[key] = round(statistics.fmean(values), 4) if values else None
            if key == "mean_accuracy":
                merged["runs"] = values
                merged["mean_accuracy_sd"] = round(statistics.stdev(values), 4) if len(values) > 1 else None
        for key in ("swaps", "failed_requests", "trainer_failures"):
            merged[key] = sum(r["schedulers"][name][key] for r in repeats)
        result["schedulers"][name] = merged
    result["repeats"] = len(repeats)
    return result


if __name__ == "__main__":
    sys.exit(main())
