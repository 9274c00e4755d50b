"""The bootstrap's edge model: constant learning rate against a cosine decay, over a few seeds.

    python bench/bootstrap_lr.py [--config examples/deployment.yaml] [--seeds 0,1,2]

Trains the deployment's bootstrap edge model (its settings: family, input size, crops, epochs, lr) on the
same pooled history crops as `ekya bootstrap`, once per seed with each schedule, and prints the held-out
accuracy after every epoch and the best, with the machine named. Training from scratch in a few epochs at
a constant rate ends with the weights still moving fast, and BatchNorm's running statistics (what an
exported model uses) lag behind them; how much that costs depends on the draw and on the CPU's float
kernels, so compare schedules over several seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="examples/deployment.yaml")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)

    from bench.machine import describe
    from controller.bootstrap_settings import bootstrap_settings
    from controller.config import load_config
    from controller.source_context import source_context
    from sources.synthetic import stream_spec
    from trainer.configs import RetrainConfig
    from trainer.fit import fit
    from trainer.models import build_model
    from trainer.streams.base import concat
    from trainer.streams.synthetic import generate_many

    config = load_config(args.config)
    s = bootstrap_settings(config)
    cameras = [stream_spec(c.source, source_context(config, c.name)) for c in config.cameras]
    windows = list(range(-s.history_windows, 0))
    per_window = -(-s.edge_crops // (len(cameras) * len(windows)))  # as trainer.bootstrap._train_edges
    data = concat(generate_many([(c, w, 0, per_window) for c in cameras for w in windows]), camera="shared")
    data = data.subsample(min(1.0, s.edge_crops / len(data)), seed=s.seed)
    train_data, val = data.split(0.15, seed=s.seed)
    retrain = RetrainConfig(epochs=s.edge_epochs, layers="all", hidden=s.edge_hidden, lr=s.edge_lr,
                            batch_size=s.batch_size)
    print(f"bootstrap edge {s.edge_family} {s.edge_input_size}px, {len(train_data)} crops "
          f"({len(val)} held out), {s.edge_epochs} epochs at lr {s.edge_lr}, on {describe()}", flush=True)
    best: dict[str, list[float]] = {"constant": [], "cosine": []}
    for seed in (int(x) for x in args.seeds.split(",")):
        for schedule in best:
            model = build_model(s.edge_family, s.edge_hidden, s.edge_input_size, seed=seed)
            t0 = time.perf_counter()
            result = fit(model, retrain.model_copy(update={"lr_schedule": schedule}), train_data, val, seed=seed)
            accs = [round(h.val_accuracy or 0.0, 3) for h in result.history]
            best[schedule].append(max(accs))
            print(f"seed {seed} {schedule:8s} held-out accuracy by epoch {accs}  best {max(accs):.3f}  "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
    for schedule, values in best.items():
        print(f"{schedule:8s} best held-out accuracy: mean {mean(values):.3f}, worst {min(values):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
