"""A trainer that runs out of memory beside live serving: it fails alone, serving does not notice.

    python bench/oom_isolation.py [--gpu] [--threads 4] [--seconds 20] [--memory-mb 2048]

A real embedded Triton serves one ResNet18 (KIND_GPU with --gpu) to client threads. Meanwhile a training
worker (`python -m trainer.worker`, as the controller starts it) gets a job that cannot fit: all layers of
ResNet18 on one batch of 512 crops. Its memory is capped the way a deployment caps it: on the GPU by
`resources.trainer_memory_mb` (an MPS client limit, CUDA_MPS_PINNED_DEVICE_MEM_LIMIT; a private MPS daemon
is started if none is given in CUDA_MPS_PIPE_DIRECTORY), on the CPU by an address-space limit a little
above its imports. Expected: the worker exits with the out-of-memory status and a clear message, leaves
no model behind, and no inference request fails or stalls.

Last line JSON {"worker_exit_code", "worker_status", "worker_message", "oom", "requests", "failed",
"p50_ms", "p99_ms", "p99_ms_during_job", "machine"}; exit status 0 when the worker ran out of memory and no
request failed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.hotswap import ADMIN_KEY, export_resnet18  # noqa: E402
from bench.load import InferenceLoad, percentile  # noqa: E402
from bench.machine import describe  # noqa: E402
from controller.triton.client import TritonClient  # noqa: E402
from controller.triton.repository import ModelRepository  # noqa: E402
from controller.triton.server import TritonServer  # noqa: E402
from controller.triton.serving import ServingManager  # noqa: E402
from controller.triton.spec import ModelSpec  # noqa: E402

BATCH = 512  # all layers of ResNet18 on this many crops: gigabytes of activations at 128 px and above


def _job_files(work: Path, size: int, device: str) -> Path:
    from trainer.configs import RetrainConfig
    from trainer.jobs import TrainJob
    from trainer.models import build_model, save_model
    from trainer.streams.base import WindowData

    rng = np.random.default_rng(0)
    WindowData(rng.integers(0, 255, (BATCH, size, size, 3), dtype=np.uint8), rng.integers(0, 6, BATCH),
               np.arange(BATCH), np.arange(BATCH), np.arange(BATCH, dtype=float)).save(work / "big.npz")
    save_model(build_model("resnet18", input_size=size), work / "base.pt")
    job = TrainJob(job_id="oom", camera="cam0", base_checkpoint=work / "base.pt", data=work / "big.npz",
                   config=RetrainConfig(epochs=1, batch_size=BATCH, layers="all"), share=0.5, device=device,
                   output_dir=work / "job")
    return job.write(work / "job.json")


def _import_peak_bytes() -> int:
    """Virtual memory a worker's imports take here (the CPU cap goes a little above it)."""
    probe = subprocess.run([sys.executable, "-c", "import trainer.worker, torch, torchvision, numpy; "
                            "print(open('/proc/self/status').read())"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, check=True)
    return next(int(line.split()[1]) * 1024 for line in probe.stdout.splitlines() if line.startswith("VmPeak:"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="serve and train on GPU 0 (MPS memory limit)")
    parser.add_argument("--threads", type=int, default=4, help="inference client threads")
    parser.add_argument("--seconds", type=float, default=20.0, help="serving time in all")
    parser.add_argument("--input-size", type=int, default=None, help="crop size (default 224 on GPU, 128 on CPU)")
    parser.add_argument("--memory-mb", type=int, default=2048, help="GPU: the trainer's memory limit")
    args = parser.parse_args()
    size = args.input_size or (224 if args.gpu else 128)
    work = Path(tempfile.mkdtemp(prefix="ekya-oom-"))
    print(f"machine: {describe()}", flush=True)
    model_path = work / "serve.onnx"
    probe, expected = export_resnet18(model_path, 0, size)
    job_file = _job_files(work, size, "cuda:0" if args.gpu else "cpu")

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cap = None
    daemon = None
    if args.gpu:
        from controller.gpu import MpsDaemon, env_for_share

        pipe_dir = os.environ.get("CUDA_MPS_PIPE_DIRECTORY")
        if pipe_dir is None:
            daemon = MpsDaemon(work / "mps")
            daemon.start()
            pipe_dir = str(daemon.pipe_dir)
        env.update(env_for_share(0.5, 0, pipe_dir=pipe_dir, memory_limit_bytes=args.memory_mb * 2**20))
        limit_text = f"MPS client memory limit {args.memory_mb} MiB"
    else:
        limit = _import_peak_bytes() + 700 * 2**20
        cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # noqa: E731
        limit_text = f"address space limit {limit / 2**30:.1f} GiB"

    repository = ModelRepository(work / "repo", keep_versions=2)
    spec = ModelSpec(name="cam0", input_dims=(3, size, size),
                     **({"instance_kind": "KIND_GPU", "gpus": (0,)} if args.gpu else {}))
    server = TritonServer(repository.root, work / "server", admin_key=ADMIN_KEY)
    info = server.start()
    admin = TritonClient(info.grpc_url, admin_key=ADMIN_KEY, timeout_s=60)
    ServingManager(repository, admin).deploy(spec, model_path, probe, expected)

    load = InferenceLoad(info.grpc_url, "cam0", size, args.threads)
    started = time.perf_counter()
    load.start()
    try:
        time.sleep(min(5.0, args.seconds / 4))
        print(f"starting a trainer that cannot fit ({BATCH} crops of {size} px, all layers; {limit_text}) ...",
              flush=True)
        job_started = time.perf_counter()
        worker = subprocess.run([sys.executable, "-m", "trainer.worker", str(job_file)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=600, check=False, preexec_fn=cap)
        job_ended = time.perf_counter()
        time.sleep(max(0.0, started + args.seconds - time.perf_counter()))
    finally:
        load.stop()
        admin.close()
        server.stop()
        if daemon is not None:
            daemon.stop()

    from trainer.jobs import EXIT_OOM, JobResult

    result_file = work / "job" / "result.json"
    result = JobResult.model_validate_json(result_file.read_text()) if result_file.is_file() else None
    summary = {
        "worker_exit_code": worker.returncode,
        "worker_status": result.status if result else None,
        "worker_message": (result.message if result else worker.stderr[-300:])[:300],
        "oom": worker.returncode == EXIT_OOM,
        "model_left_behind": (work / "job" / "best.pt").exists(),
        **load.summary(),
        "p99_ms_during_job": percentile(load.latency_ms(job_started, job_ended), 99),
        "job_seconds": round(job_ended - job_started, 2),
        "input_size": size, "instances": "KIND_GPU" if args.gpu else "KIND_CPU",
        "machine": describe(),
    }
    if load.failures:
        print("first failures:", *load.failures[:5], sep="\n  ")
    print(f"worker exit {summary['worker_exit_code']} ({summary['worker_message']}); "
          f"{summary['requests']} requests, {summary['failed']} failed; latency p50 {summary['p50_ms']} ms, "
          f"p99 {summary['p99_ms']} ms, p99 while the job ran {summary['p99_ms_during_job']} ms")
    print(json.dumps(summary))
    ok = summary["oom"] and summary["failed"] == 0 and not summary["model_left_behind"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
