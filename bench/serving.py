"""Serving-path benchmark: one 64-px ResNet18 edge model, closed loop, on the same cores, answered by
onnxruntime in-process and by the embedded Triton through our ekya_onnx backend (the spec the controller
renders for a camera holding --share of the serving pool: 1.0, the whole box, by default), with 1 and 2
client threads and 1 and 8 crops per request.

    python bench/serving.py [--quick] [--seconds 3] [--repeats 3] [--share 1.0] [--capture-rate 0.1] [--wrapper]

--wrapper adds the shape NVIDIA's container serves a capturing camera with (controller/triton/spec.py
`wrapped`): the python capture wrapper in front of the ONNX model, here ekya_onnx (the embedded server has
no onnxruntime backend), so its figures are the wrapper's hop on top of our backend.

Each configuration is measured --repeats times, onnxruntime and Triton alternating (the machine may be
shared: medians are reported). Prints the machine, a table (requests/s, crops/s, p50/p99 ms, failed,
ratio of Triton's throughput to onnxruntime's, Triton's added p50) and, as its last line, JSON.
Exit status 1 when a request failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe  # noqa: E402
from controller.config.schema import InferenceConfig  # noqa: E402
from controller.planner.instances import instances_for_share  # noqa: E402
from controller.triton.client import TritonClient  # noqa: E402
from controller.triton.repository import ModelRepository  # noqa: E402
from controller.triton.server import TritonServer  # noqa: E402
from controller.triton.serving import ServingManager  # noqa: E402
from controller.triton.spec import ModelSpec  # noqa: E402
from trainer.shares import usable_cores  # noqa: E402

ADMIN_KEY = "bench-admin-key"
MODEL = "cam0"
CAPTURE_MODEL = "cam1"  # the same model with sample capture on
WRAPPED_MODEL = "cam2"  # ...captured by the python wrapper in front of it (the container's shape)
CLASSES = 6


@dataclass
class Run:
    """One closed-loop measurement: latencies of answered requests, and failures."""

    seconds: float
    crops: int
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def figures(self) -> dict:
        ms = np.array(self.latencies) * 1000.0
        requests = ms.size / self.seconds
        return {"rps": requests, "crops_s": requests * self.crops,
                "p50_ms": float(np.percentile(ms, 50)) if ms.size else float("nan"),
                "p99_ms": float(np.percentile(ms, 99)) if ms.size else float("nan"),
                "failed": len(self.failures)}


def closed_loop(make_call: Callable[[int], Callable[[np.ndarray], np.ndarray]], threads: int, crops: int,
                size: int, seconds: float, warmup_s: float) -> Run:
    """`threads` clients, each sending its next request as soon as the last one is answered; only
    requests sent after the warm-up and answered before the end count."""
    run = Run(seconds=seconds, crops=crops)
    start_at = time.perf_counter() + warmup_s
    stop_at = start_at + seconds
    ready = threading.Barrier(threads + 1)
    lock = threading.Lock()

    def client(index: int) -> None:
        call = make_call(index)
        batch = np.random.default_rng(index).random((crops, 3, size, size), dtype=np.float32)
        mine: list[float] = []
        ready.wait()
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                break
            try:
                out = call(batch)
                if out.shape != (crops, CLASSES) or not np.all(np.isfinite(out)):
                    raise ValueError(f"bad output {out.shape}")
            except Exception as exc:  # every failure counts
                with lock:
                    run.failures.append(repr(exc))
                continue
            done = time.perf_counter()
            if sent >= start_at and done <= stop_at:
                mine.append(done - sent)
        with lock:
            run.latencies.extend(mine)

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    for worker in workers:
        worker.join(timeout=seconds + warmup_s + 120)
    return run


def export_edge_model(path: Path, size: int) -> None:
    """The project's edge model (random init) through the project's ONNX export."""
    from trainer.export import export_onnx
    from trainer.models import build_model

    export_onnx(build_model("resnet18", input_size=size, seed=0), path, size)


def onnxruntime_caller(path: Path, intra_op_threads: int) -> Callable[[int], Callable[[np.ndarray], np.ndarray]]:
    """One session shared by the client threads, set as the backend sets its own (one session per
    instance, intra-op threads from the spec): the model's own speed on these cores."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return lambda _index: (lambda batch: session.run(["logits"], {"input": batch})[0])


def triton_caller(url: str, model: str = MODEL) -> Callable[[int], Callable[[np.ndarray], np.ndarray]]:
    """A gRPC client per thread, as every camera has its own."""

    def make(_index: int) -> Callable[[np.ndarray], np.ndarray]:
        client = TritonClient(url, timeout_s=30)
        return lambda batch: client.infer(model, batch)

    return make


def served_spec(size: int, share: float, capture: dict, name: str = MODEL) -> ModelSpec:
    """What the controller renders for a camera holding `share` of the serving pool with the default
    inference config (controller/runtime/deployment.py model_spec; reconcile/acting.py sets the instances)."""
    config = InferenceConfig()
    instances = instances_for_share(share, config.full_share, config.max_instances, cores=usable_cores())
    return ModelSpec(name=name, input_dims=(3, size, size), max_batch_size=config.max_batch_size,
                     max_queue_delay_us=config.max_queue_delay_us, instance_count=instances, **capture)


def capture_fields(directory: Path, rate: float) -> dict:
    """Sample capture as the controller turns it on for a camera model (the default sampling rate)."""
    return {"capture_dir": str(directory), "capture_rate": rate, "capture_budget_bytes": 2**30,
            "capture_chunk_seconds": 5.0}


def captured_bytes_per_crop(directory: Path) -> tuple[int, float]:
    """Crops captured, and the chunk files' bytes per crop."""
    from protocol.capture import chunk_files, read_chunk

    files = [p for d in directory.iterdir() if d.is_dir() for p in chunk_files(d)] if directory.is_dir() else []
    crops = sum(len(read_chunk(p)) for p in files)
    return crops, (sum(p.stat().st_size for p in files) / crops if crops else float("nan"))


def machine_load() -> str:
    """The 1-min load average and CPU pressure (other work on these cores makes every figure lower)."""
    try:
        load = open("/proc/loadavg", encoding="utf-8").read().split()[0]
        pressure = open("/proc/pressure/cpu", encoding="utf-8").readline().split()[2].removeprefix("avg60=")
    except (OSError, IndexError):
        return "unknown"
    return f"load average {load}, CPU pressure (some, 60 s) {pressure}%"


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: short runs, one repeat")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.75)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--crops", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--share", type=float, default=1.0,
                        help="the camera's inference share (1.0: the whole box; 0.25: a full share)")
    parser.add_argument("--capture-rate", type=float, default=0.1,
                        help="also a Triton model with sample capture on, at this rate (0: leave it out)")
    parser.add_argument("--wrapper", action="store_true",
                        help="also capture through the python wrapper in front of the model (needs --capture-rate)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the model and Triton runtime here")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.repeats = 1.5, 0.5, 1

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ekya-serving-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {describe()}", flush=True)
    onnx_path = work / f"resnet18-{args.input_size}.onnx"
    if not onnx_path.is_file():
        export_edge_model(onnx_path, args.input_size)
    spec = served_spec(args.input_size, args.share, {})
    capture = capture_fields(work / "capture", args.capture_rate) if args.capture_rate > 0 else {}
    shutil.rmtree(work / "capture", ignore_errors=True)
    print(f"spec at share {args.share:g}: {spec.instance_count} instance(s), intra-op threads {spec.intra_op_threads}, "
          f"max batch {spec.max_batch_size}, queue delay {spec.max_queue_delay_us} us", flush=True)

    server = TritonServer(ModelRepository(work / "repo").root, work / "server", admin_key=ADMIN_KEY)
    info = server.start()
    results: dict[tuple[str, int, int], list[dict]] = {}
    try:
        with TritonClient(info.grpc_url, admin_key=ADMIN_KEY, timeout_s=120) as admin:
            manager = ServingManager(ModelRepository(work / "repo"), admin, load_timeout_s=120)
            manager.deploy(spec, onnx_path)
            if capture:
                manager.deploy(served_spec(args.input_size, args.share, capture, CAPTURE_MODEL), onnx_path)
            if capture and args.wrapper:
                manager.deploy(served_spec(args.input_size, args.share, {**capture, "capture_via": "wrapper"},
                                           WRAPPED_MODEL), onnx_path)
        callers = {"onnxruntime": onnxruntime_caller(onnx_path, spec.intra_op_threads),
                   "triton": triton_caller(info.grpc_url)}
        if capture:
            callers["triton+capture"] = triton_caller(info.grpc_url, CAPTURE_MODEL)
        if capture and args.wrapper:
            callers["triton+wrapper"] = triton_caller(info.grpc_url, WRAPPED_MODEL)
        for repeat in range(args.repeats):
            for threads in args.threads:
                for crops in args.crops:
                    for name, caller in callers.items():
                        run = closed_loop(caller, threads, crops, args.input_size, args.seconds, args.warmup)
                        results.setdefault((name, threads, crops), []).append(run.figures())
                        if run.failures:
                            print(f"  {name}: {len(run.failures)} failed, first: {run.failures[0]}", flush=True)
            print(f"  repeat {repeat + 1}/{args.repeats} done", flush=True)
    finally:
        server.stop()

    rows = []
    for threads in args.threads:
        for crops in args.crops:
            row: dict = {"threads": threads, "crops": crops}
            for name in callers:
                runs = results[(name, threads, crops)]
                row[name] = {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
                row[name]["failed"] = sum(r["failed"] for r in runs)
            row["throughput_ratio"] = round(row["triton"]["rps"] / row["onnxruntime"]["rps"], 3)
            row["added_p50_ms"] = round(row["triton"]["p50_ms"] - row["onnxruntime"]["p50_ms"], 2)
            if capture:
                on = row["triton+capture"]
                row["capture_throughput_ratio"] = round(on["rps"] / row["onnxruntime"]["rps"], 3)
                row["capture_p50_increase"] = round(on["p50_ms"] / row["triton"]["p50_ms"] - 1.0, 3)
            if "triton+wrapper" in row:
                wrapped = row["triton+wrapper"]
                row["wrapper_throughput_ratio"] = round(wrapped["rps"] / row["onnxruntime"]["rps"], 3)
                row["wrapper_added_p50_ms"] = round(wrapped["p50_ms"] - row["triton+capture"]["p50_ms"], 2)
            rows.append(row)

    print(f"\nmedians of {args.repeats} run(s) of {args.seconds:g} s each, "
          f"at the end: {machine_load()}")
    print(f"{'threads':>7} {'crops':>5} | {'ort req/s':>9} {'crops/s':>8} {'p50':>6} {'p99':>6} | "
          f"{'triton req/s':>12} {'crops/s':>8} {'p50':>6} {'p99':>6} {'failed':>6} | {'ratio':>5} {'+p50 ms':>7}")
    for row in rows:
        o, t = row["onnxruntime"], row["triton"]
        print(f"{row['threads']:>7} {row['crops']:>5} | {fmt(o['rps']):>9} {fmt(o['crops_s']):>8} "
              f"{fmt(o['p50_ms'], 2):>6} {fmt(o['p99_ms'], 2):>6} | {fmt(t['rps']):>12} {fmt(t['crops_s']):>8} "
              f"{fmt(t['p50_ms'], 2):>6} {fmt(t['p99_ms'], 2):>6} {t['failed']:>6} | "
              f"{row['throughput_ratio']:>5.2f} {row['added_p50_ms']:>7.2f}")
    if capture:
        print(f"{'threads':>7} {'crops':>5} | capture on: {'req/s':>7} {'p50':>6} {'p99':>6} {'failed':>6} | "
              f"{'ratio':>5} {'p50 vs off':>10}")
        for row in rows:
            on = row["triton+capture"]
            print(f"{row['threads']:>7} {row['crops']:>5} | {'':>11} {fmt(on['rps']):>7} {fmt(on['p50_ms'], 2):>6} "
                  f"{fmt(on['p99_ms'], 2):>6} {on['failed']:>6} | {row['capture_throughput_ratio']:>5.2f} "
                  f"{row['capture_p50_increase']:>+10.1%}")
        if "triton+wrapper" in callers:
            print(f"{'threads':>7} {'crops':>5} | wrapper:    {'req/s':>7} {'p50':>6} {'p99':>6} {'failed':>6} | "
                  f"{'ratio':>5} {'+p50 ms vs capture in the backend':>10}")
            for row in rows:
                wrapped = row["triton+wrapper"]
                print(f"{row['threads']:>7} {row['crops']:>5} | {'':>11} {fmt(wrapped['rps']):>7} "
                      f"{fmt(wrapped['p50_ms'], 2):>6} {fmt(wrapped['p99_ms'], 2):>6} {wrapped['failed']:>6} | "
                      f"{row['wrapper_throughput_ratio']:>5.2f} {row['wrapper_added_p50_ms']:>+10.2f}")
        crops_captured, per_crop = captured_bytes_per_crop(work / "capture")
        print(f"captured {crops_captured} crops at rate {args.capture_rate:g}: {per_crop:,.0f} bytes per crop on disk")
    failed = sum(r[name]["failed"] for r in rows for name in callers)
    print(json.dumps({"machine": describe(), "seconds": args.seconds, "repeats": args.repeats, "share": args.share,
                      "capture_rate": args.capture_rate if capture else 0, "load_at_end": machine_load(),
                      "spec": spec.model_dump(mode="json"), "rows": rows, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
