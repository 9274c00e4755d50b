"""Training throughput (img/s) per edge model and input size at shares 1.0 / 0.5 / 0.25 / 0.1.

    python bench/train_throughput.py [--models resnet18,...] [--sizes 64] [--batch 32] [--seconds 4]

Each share runs in its own subprocess, realised as the worker realises it: on CUDA with
CUDA_MPS_ACTIVE_THREAD_PERCENTAGE set before CUDA starts (meaningful when an MPS daemon is running),
on CPU with torch.set_num_threads(max(1, round(share * cores))). The measured step is the worker's:
trainer.training.Trainer.run_epoch (SGD, all layers; bf16 autocast + channels-last on CUDA).
Prints a table naming the machine and writes one profile per model and size to bench/profiles/:
{"machine", "device", "model", "input_size", "batch", "shares": {"1.0": img_s, ...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARES = (1.0, 0.5, 0.25, 0.1)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0)
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {_cores()} cores"


def child(model: str, size: int, share: float, batch: int, device: str, seconds: float) -> None:
    """Runs in a fresh process: set the share, then import torch and measure."""
    if device.startswith("cuda"):
        os.environ["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(1, round(share * 100)))
    import numpy as np
    import torch

    from trainer.configs import RetrainConfig
    from trainer.models import build_model
    from trainer.streams.base import WindowData
    from trainer.training import Trainer
    from trainer.worker import cpu_threads

    if not device.startswith("cuda"):
        torch.set_num_threads(cpu_threads(share))
    n = batch * 8
    rng = np.random.default_rng(0)
    data = WindowData(rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 6, n),
                      np.arange(n), np.arange(n), np.arange(n, dtype=float))
    trainer = Trainer(build_model(model, 64, size), data, RetrainConfig(batch_size=batch, layers="all"), device)
    trainer.run_epoch()  # warm-up (cudnn autotune, allocator, thread pools)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or done == 0:
        trainer.run_epoch()
        done += trainer.n
    print(json.dumps({"img_per_s": done / (time.perf_counter() - t0), "threads": torch.get_num_threads()}))


def measure(model: str, size: int, share: float, batch: int, device: str, seconds: float) -> float:
    cmd = [sys.executable, __file__, "--child", model, str(size), str(share), str(batch), device, str(seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} {size}px share {share} failed:\n{proc.stderr[-2000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["img_per_s"])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        m, size, share, batch, device, secs = sys.argv[2:8]
        child(m, int(size), float(share), int(batch), device, float(secs))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18,mobilenet_v3_small,shufflenet_v2_x0_5")
    ap.add_argument("--sizes", default=None, help="input sizes (default 64 on CPU, 64,224 on CUDA)")
    ap.add_argument("--shares", default=",".join(str(s) for s in SHARES))
    ap.add_argument("--batch", type=int, default=None, help="default 32 on CPU, 64 on CUDA")
    ap.add_argument("--seconds", type=float, default=4.0, help="measuring time per point")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "profiles"))
    ap.add_argument("--json", action="store_true", help="print the profiles as one JSON line at the end")
    args = ap.parse_args()

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    sizes = [int(s) for s in (args.sizes or ("64,224" if cuda else "64")).split(",")]
    batch = args.batch or (64 if cuda else 32)
    shares = [float(s) for s in args.shares.split(",")]
    machine = machine_name(device)
    how = "MPS active-thread %" if cuda else f"torch threads of {_cores()} cores"
    print(f"training throughput (img/s) on {machine} [{device}], batch {batch}, shares as {how}")
    print(f"{'model':<20} {'size':>5} " + " ".join(f"{s:>9g}" for s in shares))
    slug = re.sub(r"[^a-z0-9]+", "-", ("gpu-" + machine if cuda else f"cpu-{_cores()}c").lower()).strip("-")
    profiles = []
    for model in args.models.split(","):
        for size in sizes:
            row = {f"{s:g}" if s != 1.0 else "1.0": measure(model, size, s, batch, device, args.seconds)
                   for s in shares}
            print(f"{model:<20} {size:>5} " + " ".join(f"{v:>9.1f}" for v in row.values()), flush=True)
            prof = {"machine": machine, "device": "cuda" if cuda else "cpu", "model": model,
                    "input_size": size, "batch": batch, "shares": {k: round(v, 1) for k, v in row.items()}}
            from trainer.atomic import atomic_write_json

            atomic_write_json(Path(args.out) / f"{slug}-{model}-{size}-b{batch}.json", prof)
            profiles.append(prof)
    print(f"profiles written to {args.out}")
    if args.json:
        print(json.dumps(profiles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
