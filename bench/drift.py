"""Drift benchmark: train an edge model on a camera's history, measure it on window 0 and window 5,
retrain on window 5's training split, measure on window 5's held-out split.

    python bench/drift.py [--json] [--model resnet18] [--crop-size 64] [--seed 0]

Last line: JSON {"acc_on_window0", "acc_on_window5", "retrained_acc_on_window5"}.
Target: a drop of >= 10 points from window 0 to 5, and retraining recovers at least half of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--crop-size", type=int, default=64)
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0, help="camera seed")
    ap.add_argument("--history-windows", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from trainer.drift import drift_experiment
    from trainer.streams.synthetic import CameraStreamSpec

    spec = CameraStreamSpec(name="bench", seed=args.seed, crop_size=args.crop_size)
    t0 = time.perf_counter()
    r = drift_experiment(spec, args.model, args.input_size, args.history_windows, device=args.device,
                         log=not args.json)
    secs = time.perf_counter() - t0
    if not args.json:
        print(f"camera seed {args.seed}, {args.model} at {args.input_size or args.crop_size}px, {secs:.0f} s")
        print(f"  window 0: {r.acc_on_window0:.3f}   window 5: {r.acc_on_window5:.3f} "
              f"(drop {100 * r.drop:.1f} points)   retrained on window 5: {r.retrained_acc_on_window5:.3f} "
              f"(recovers {100 * r.recovered:.1f} points, {r.recovered / r.drop:.0%} of the drop)"
              if r.drop > 0 else f"  no drop: {r}")
        ok = r.drop >= 0.10 and r.recovered >= r.drop / 2
        print(f"  target (drop >= 10 points, recover >= half): {'met' if ok else 'NOT met'}")
    print(json.dumps(r.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
