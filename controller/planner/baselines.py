"""Baseline schedulers of the original: fair, uniform, noretrain."""

from __future__ import annotations

import time

import numpy as np

from .common import build_plan
from .profiles import Plan, Problem


def _static(problem: Problem, name: str, config: str | None, inference_fraction: float) -> Plan:
    t0 = time.perf_counter()
    if not 0.0 <= inference_fraction <= 1.0:
        raise ValueError("inference fraction must be in [0, 1]")
    n = len(problem.cameras)
    if n == 0:
        return build_plan(problem, name, np.zeros(0), np.zeros(0), [], 0.0)
    cap = problem.job_cap
    g = float(problem.gpus)
    inf = np.full(n, min(inference_fraction * g / n, cap))
    cfgs = [config if config is not None and any(o.config == config for o in c.options) else None
            for c in problem.cameras]
    tr = np.full(n, min((1.0 - inference_fraction) * g / n, cap))
    return build_plan(problem, name, inf, tr, cfgs, time.perf_counter() - t0)


def fair(problem: Problem, config: str | None, inference_fraction: float = 0.5) -> Plan:
    """A fraction w of the GPUs split equally over inference jobs, the rest over retraining jobs, every
    camera retraining with the same fixed config (a camera without it does not retrain; its training
    share goes to the others by the equal split). Completed shares: the original's equal split."""
    return _static(problem, "fair", config, inference_fraction)


def uniform(problem: Problem, config: str | None, inference_fraction: float = 0.5) -> Plan:
    """The paper's uniform baseline: a fixed config and a static split (0.3 / 0.5 / 0.9 to inference).
    Mechanically fair with a chosen split; named apart for reports."""
    return _static(problem, f"uniform-{inference_fraction:g}", config, inference_fraction)


def noretrain(problem: Problem) -> Plan:
    """All GPUs to inference, split equally; no retraining."""
    return _static(problem, "noretrain", None, 1.0)
