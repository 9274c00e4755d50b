"""bench/e2e.py's --repeat: several comparisons' summaries combined into one."""

from __future__ import annotations

import importlib.util

import pytest

from tests.repo import REPO_ROOT

ROOT = REPO_ROOT


def _bench():
    spec = importlib.util.spec_from_file_location("bench_e2e", ROOT / "bench" / "e2e.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(thief: float, fair: float, failed: int) -> dict:
    def sched(acc: float) -> dict:
        return {"mean_accuracy": acc, "mean_accuracy_retraining_windows": acc + 0.02, "swaps": 3,
                "failed_requests": failed, "trainer_failures": 0}

    return {"cameras": 4, "windows": 4, "failed_requests": 2 * failed, "requests": 100, "swaps": 6,
            "schedulers": {"thief": sched(thief), "fair": sched(fair)}}


def test_repeats_are_averaged_with_their_spread_and_counts_summed() -> None:
    combined = _bench().combine([_summary(0.70, 0.65, 0), _summary(0.66, 0.64, 1), _summary(0.68, 0.63, 0)])
    thief, fair = combined["schedulers"]["thief"], combined["schedulers"]["fair"]
    assert thief["mean_accuracy"] == pytest.approx(0.68) and fair["mean_accuracy"] == pytest.approx(0.64)
    assert thief["runs"] == [0.70, 0.66, 0.68] and thief["mean_accuracy_sd"] == pytest.approx(0.02)
    assert thief["mean_accuracy_retraining_windows"] == pytest.approx(0.70)
    assert thief["swaps"] == 9 and thief["failed_requests"] == 1
    assert combined["requests"] == 300 and combined["failed_requests"] == 2 and combined["repeats"] == 3
