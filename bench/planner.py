"""Benchmark: fast thief and the ekya optimiser vs the slow reference (the original's behaviour) on
generated profiles.

    .venv/bin/python bench/planner.py [--repeats 5] [--ref-deadline 120]

Prints per case the median planning time of each, the speedup, the planned-accuracy ratios (fast /
reference and ekya / reference, exact objective, after placing jobs on devices) and whether each plan
packs on the devices; the last line is JSON.
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

from controller.planner.ekya import ekya
from controller.planner.placement import device_loads
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
        ekya(p)
        t_fast, fast = timed(lambda p=p: thief(p), args.repeats)
        t_ekya, opt = timed(lambda p=p: ekya(p), args.repeats)
        t_ref, ref = timed(lambda p=p: thief_reference(p, deadline_s=args.ref_deadline), args.ref_repeats)
        truncated = t_ref >= args.ref_deadline
        ratio = fast.planned_accuracy / ref.planned_accuracy if ref.planned_accuracy > 0 else float("nan")
        e_ratio = opt.planned_accuracy / ref.planned_accuracy if ref.planned_accuracy > 0 else float("nan")

        def packs(pl, gpus=gpus) -> bool:
            return pl.placement_ok and all(x <= 1.0 + 1e-6 for x in device_loads(pl.allocations, gpus))

        row = {"cameras": cams, "gpus": gpus, "configs": cfgs, "fast_s": round(t_fast, 5), "reference_s": round(t_ref, 4),
               "speedup": round(t_ref / t_fast, 1), "fast_accuracy": round(fast.planned_accuracy, 5),
               "reference_accuracy": round(ref.planned_accuracy, 5), "accuracy_ratio": round(ratio, 5),
               "reference_truncated": truncated, "placement_ok": packs(fast),
               "ekya_s": round(t_ekya, 5), "ekya_accuracy": round(opt.planned_accuracy, 5),
               "ekya_ratio": round(e_ratio, 5), "ekya_placement_ok": packs(opt),
               "reference_placement_ok": ref.placement_ok}
        results.append(row)
        print(f"{cams} cameras x {gpus} GPUs x {cfgs} configs (median of {args.repeats}):\n"
              f"  {'scheduler':<16}{'time':>12}{'planned acc':>13}{'/ reference':>13}{'packs':>7}\n"
              f"  {'thief (fast)':<16}{t_fast * 1e3:>9.1f} ms{fast.planned_accuracy:>13.4f}{ratio:>13.4f}"
              f"{str(packs(fast)):>7}\n"
              f"  {'ekya':<16}{t_ekya * 1e3:>9.1f} ms{opt.planned_accuracy:>13.4f}{e_ratio:>13.4f}"
              f"{str(packs(opt)):>7}\n"
              f"  {'thief-reference':<16}{t_ref:>10.2f} s{ref.planned_accuracy:>13.4f}{1.0:>13.4f}"
              f"{str(ref.placement_ok):>7}{' (truncated)' if truncated else ''}\n"
              f"  speedup thief vs reference {t_ref / t_fast:.0f}x")
    print(json.dumps({"bench": "planner", "machine": machine, "cases": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
