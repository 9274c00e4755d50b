"""Inference load for the serving benchmarks: client threads calling one model on a Triton server, one
crop per request, each answer checked, until stopped."""

from __future__ import annotations

import threading
import time

import numpy as np

from controller.triton.client import TritonClient


class InferenceLoad:
    def __init__(self, grpc_url: str, model: str, input_size: int, threads: int) -> None:
        self.samples: list[tuple[float, float]] = []  # (sent at, perf_counter; latency in seconds)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(grpc_url, model, input_size, i), daemon=True)
                         for i in range(threads)]

    def _loop(self, url: str, model: str, size: int, index: int) -> None:
        client = TritonClient(url, timeout_s=30)
        batch = np.random.default_rng(index).random((1, 3, size, size), dtype=np.float32)
        while not self._stop.is_set():
            sent = time.perf_counter()
            try:
                out = client.infer(model, batch)
                if out.shape != (1, 6) or not np.all(np.isfinite(out)):
                    raise ValueError(f"bad output {out.shape}")
                self.samples.append((sent, time.perf_counter() - sent))
            except Exception as exc:  # every failure counts; the first few are shown
                self.failures.append(repr(exc))
        client.close()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def latency_ms(self, since: float = float("-inf"), until: float = float("inf")) -> np.ndarray:
        """Latencies (ms) of the answered requests sent between `since` and `until` (perf_counter)."""
        return np.array([lat for sent, lat in self.samples if since <= sent <= until]) * 1000.0

    def summary(self) -> dict:
        ms = self.latency_ms()
        return {"requests": int(ms.size + len(self.failures)), "failed": len(self.failures),
                "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                "max_ms": round(float(ms.max()), 2) if ms.size else None}


def percentile(ms: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(ms, q)), 2) if ms.size else None
