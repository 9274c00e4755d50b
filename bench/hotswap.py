"""Hot-swap benchmark: T client threads call a camera model on a real embedded Triton while V new
versions are published and the instance count is changed.

    python bench/hotswap.py [--threads 2] [--swaps 20] [--seconds 60] [--input-size 64]

Prints a summary and, as its last line, JSON
{"requests", "failed", "swaps", "p50_ms", "p99_ms", "max_ms", "load_s_median", ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import InferenceLoad  # noqa: E402
from bench.machine import describe  # noqa: E402
from controller.triton.client import TritonClient  # noqa: E402
from controller.triton.repository import ModelRepository  # noqa: E402
from controller.triton.server import TritonServer  # noqa: E402
from controller.triton.serving import ServingManager  # noqa: E402
from controller.triton.spec import ModelSpec  # noqa: E402

ADMIN_KEY = "bench-admin-key"


def export_resnet18(path: Path, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=6).eval()
    probe = torch.rand(2, 3, size, size)
    torch.onnx.export(model, probe, str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    with torch.no_grad():
        return probe.numpy(), model(probe).numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--gpu", action="store_true", help="KIND_GPU instances on GPU 0 (else KIND_CPU)")
    parser.add_argument("--variants", type=int, default=3, help="distinct model weights to rotate through")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ekya-hotswap-"))
    print(f"machine: {describe()}", flush=True)
    print(f"exporting {args.variants} ResNet18 variants at {args.input_size}x{args.input_size} ...", flush=True)
    variants = []
    for seed in range(args.variants):
        path = work / f"resnet18-{seed}.onnx"
        probe, expected = export_resnet18(path, seed, args.input_size)
        variants.append((path, probe, expected))

    repository = ModelRepository(work / "repo", keep_versions=3)
    spec = ModelSpec(name="cam0", input_dims=(3, args.input_size, args.input_size),
                     **({"instance_kind": "KIND_GPU", "gpus": (0,)} if args.gpu else {}))
    server = TritonServer(repository.root, work / "server", admin_key=ADMIN_KEY)
    info = server.start()
    admin = TritonClient(info.grpc_url, admin_key=ADMIN_KEY, timeout_s=60)
    serving = ServingManager(repository, admin)
    serving.deploy(spec, *variants[0])

    load = InferenceLoad(info.grpc_url, "cam0", args.input_size, args.threads)
    load.start()
    load_seconds = []
    instance_changes = 0
    interval = args.seconds / (args.swaps + 1)
    started = time.monotonic()
    try:
        for swap in range(args.swaps):
            time.sleep(max(0.0, started + interval * (swap + 1) - time.monotonic()))
            path, probe, expected = variants[(swap + 1) % len(variants)]
            result = serving.publish("cam0", path, probe, expected)
            load_seconds.append(result.load_seconds)
            if swap % 4 == 3:  # every 4th swap also changes the instance count (1 <-> 2)
                serving.set_instances("cam0", 2 if repository.read_spec("cam0").instance_count == 1 else 1)
                instance_changes += 1
            print(f"  swap {swap + 1}/{args.swaps}: version {result.version}, load {result.load_seconds:.2f}s",
                  flush=True)
        time.sleep(max(0.0, started + args.seconds - time.monotonic()))
    finally:
        load.stop()
        admin.close()
        server.stop()

    summary = {
        **load.summary(),
        "swaps": len(load_seconds),
        "instance_changes": instance_changes,
        "load_s_median": round(float(np.median(load_seconds)), 3) if load_seconds else None,
        "threads": args.threads,
        "seconds": args.seconds,
        "input_size": args.input_size, "instances": "KIND_GPU" if args.gpu else "KIND_CPU",
        "machine": describe(),
    }
    if load.failures:
        print("first errors:", *load.failures[:5], sep="\n  ")
    print(f"{summary['requests']} requests, {summary['failed']} failed, {summary['swaps']} swaps; "
          f"latency p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, max {summary['max_ms']} ms; "
          f"median load {summary['load_s_median']} s")
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
