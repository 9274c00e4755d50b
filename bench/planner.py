"""Benchmark: fast thief vs the slow reference (the original's behaviour) on generated profiles.

    .venv/bin/python bench/planner.py [--repeats 5] [--ref-deadline 120]

Prints per case the median planning time of both, the speedup, and the planned-accuracy ratio
(fast / reference, exact objective); the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.planner.synthetic_profiles import random_problem
from controller.planner.thief import thief
from controller.planner.thief_reference import thief_reference

CASES = ((10, 4, 18), (100, 16, 18))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref-repeats", type=int, default=1)
    ap.add_argument("--ref-deadline", type=float, default=120.0,
                    help="stop the reference after this many seconds (reported as truncated)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    machine = f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}")
    results = []
    for cams, gpus, cfgs in CASES:
        p = random_problem(cams, gpus, configs=cfgs, seed=args.seed)
        thief(p)  # warm-up (imports, caches)
        t_fast, fast = timed(lambda p=p: thief(p), args.repeats)
        t_ref, ref = timed(lambda p=p: thief_reference(p, deadline_s=args.ref_deadline), args.ref_repeats)
        truncated = t_ref >= args.ref_deadline
        ratio = fast.planned_accuracy / ref.planned_accuracy if ref.planned_accuracy > 0 else float("nan")
        row = {"cameras": cams, "gpus": gpus, "configs": cfgs, "fast_s": round(t_fast, 5), "reference_s": round(t_ref, 4),
               "speedup": round(t_ref / t_fast, 1), "fast_accuracy": round(fast.planned_accuracy, 5),
               "reference_accuracy": round(ref.planned_accuracy, 5), "accuracy_ratio": round(ratio, 5),
               "reference_truncated": truncated, "placement_ok": fast.placement_ok}
        results.append(row)
        print(f"{cams} cameras x {gpus} GPUs x {cfgs} configs: fast {t_fast * 1e3:.1f} ms (median of {args.repeats}), "
              f"reference {t_ref:.2f} s{' (truncated)' if truncated else ''}, speedup {t_ref / t_fast:.0f}x, "
              f"planned accuracy fast {fast.planned_accuracy:.4f} / reference {ref.planned_accuracy:.4f} "
              f"= {ratio:.4f}")
    print(json.dumps({"bench": "planner", "machine": machine, "cases": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
