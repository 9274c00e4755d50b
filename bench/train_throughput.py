"""Training throughput (img/s) per edge model and input size at shares 1.0 / 0.5 / 0.25 / 0.1.

    python bench/train_throughput.py [--models resnet18,...] [--sizes 64] [--batch 32] [--seconds 4]

Each share runs in its own subprocess, realised as the worker realises it: on CUDA with
CUDA_MPS_ACTIVE_THREAD_PERCENTAGE set before CUDA starts (meaningful when an MPS daemon is running),
on CPU with torch.set_num_threads(max(1, round(share * cores))). The measured step is the worker's:
trainer.training.Trainer.run_epoch (SGD, all layers; bf16 autocast + channels-last on CUDA).
Prints a table naming the machine and writes one profile per model and size to bench/profiles/:
{"machine", "device", "model", "input_size", "batch", "shares": {"1.0": img_s, ...}}.

`--reference` adds, per model and size, eager torch's figure for the same model and batch: a bare loop
(forward, loss, backward, SGD step) on random tensors already on the device, bf16 autocast and
channels-last on CUDA, no data handling at all, and the trainer's share-1.0 figure as a fraction of it.

Each figure is the median over the measuring time of per-epoch rates (8 batches, ending with a wait for
the device), so that one slow epoch (a hiccup of the host) does not move it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.shares import usable_cores  # noqa: E402

SHARES = (1.0, 0.5, 0.25, 0.1)


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
    return f"{model}, {usable_cores()} cores"


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
    rates, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < seconds or not rates:
        rates.append(trainer.run_epoch()[1])  # each epoch ends waiting for its last step
    print(json.dumps({"img_per_s": statistics.median(rates), "threads": torch.get_num_threads()}))


def eager_reference(model: str, size: int, batch: int, device: str, seconds: float) -> None:
    """Runs in a fresh process: eager torch's training img/s for the model, with nothing but the step."""
    import torch
    import torch.nn.functional as F

    from trainer.models import build_model

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if not cuda:  # the threads the trainer gets at share 1.0, so that the two figures compare
        from trainer.worker import cpu_threads

        torch.set_num_threads(cpu_threads(1.0))
    torch.backends.cudnn.benchmark = True
    net = build_model(model, 64, size).to(dev)
    if cuda:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    x = torch.rand(batch, 3, size, size, device=dev)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 6, (batch,), device=dev)

    def steps(n: int) -> None:
        for _ in range(n):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(net(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if cuda:
            torch.cuda.synchronize(dev)

    steps(10)  # warm-up (cudnn autotune, allocator)
    rates, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < seconds or not rates:  # blocks of 8 steps: the trainer's epoch here
        t_block = time.perf_counter()
        steps(8)
        rates.append(8 * batch / (time.perf_counter() - t_block))
    print(json.dumps({"img_per_s": statistics.median(rates), "threads": torch.get_num_threads()}))


def measure(model: str, size: int, share: float, batch: int, device: str, seconds: float,
            eager: bool = False) -> float:
    cmd = [sys.executable, __file__, "--eager" if eager else "--child", model, str(size), str(share), str(batch),
           device, str(seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} {size}px share {share} failed:\n{proc.stderr[-2000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["img_per_s"])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("--child", "--eager"):
        m, size, share, batch, device, secs = sys.argv[2:8]
        if sys.argv[1] == "--eager":
            eager_reference(m, int(size), int(batch), device, float(secs))
        else:
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
    ap.add_argument("--reference", action="store_true",
                    help="also measure eager torch on the same model and batch (share 1.0) and print the ratio")
    args = ap.parse_args()

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    sizes = [int(s) for s in (args.sizes or ("64,224" if cuda else "64")).split(",")]
    batch = args.batch or (64 if cuda else 32)
    shares = [float(s) for s in args.shares.split(",")]
    machine = machine_name(device)
    how = "MPS active-thread %" if cuda else f"torch threads of {usable_cores()} cores"
    print(f"training throughput (img/s) on {machine} [{device}], batch {batch}, shares as {how}")
    print(f"{'model':<20} {'size':>5} " + " ".join(f"{s:>9g}" for s in shares)
          + (f" {'eager':>9} {'1.0/eager':>9}" if args.reference else ""))
    slug = re.sub(r"[^a-z0-9]+", "-", ("gpu-" + machine if cuda else f"cpu-{usable_cores()}c").lower()).strip("-")
    profiles = []
    for model in args.models.split(","):
        for size in sizes:
            row = {f"{s:g}" if s != 1.0 else "1.0": measure(model, size, s, batch, device, args.seconds)
                   for s in shares}
            line = f"{model:<20} {size:>5} " + " ".join(f"{v:>9.1f}" for v in row.values())
            prof = {"machine": machine, "device": "cuda" if cuda else "cpu", "model": model,
                    "input_size": size, "batch": batch, "shares": {k: round(v, 1) for k, v in row.items()}}
            if args.reference:
                eager = measure(model, size, 1.0, batch, device, args.seconds, eager=True)
                prof["eager_img_per_s"] = round(eager, 1)
                if "1.0" in row:
                    prof["share_1_vs_eager"] = round(row["1.0"] / eager, 3)
                    line += f" {eager:>9.1f} {row['1.0'] / eager:>9.2f}"
                else:
                    line += f" {eager:>9.1f} {'--':>9}"
            print(line, flush=True)
            from common.atomic import atomic_write_json

            atomic_write_json(Path(args.out) / f"{slug}-{model}-{size}-b{batch}.json", prof)
            profiles.append(prof)
    print(f"profiles written to {args.out}")
    if args.json:
        print(json.dumps(profiles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
