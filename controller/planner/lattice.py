"""The thief's share lattice: the fair start plus whole steps of delta (delta is a step, not a grid).

Deviation from the original: if the fair share is below delta, the step is the fair share (so a job can
be emptied); with delta the original cannot steal anything there (e.g. 10 cameras on 1 GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .profiles import EPS, Problem


@dataclass(frozen=True)
class Lattice:
    fair: float
    delta: float
    kmin: int  # most steps below fair (shares stay >= 0)
    kmax: int  # most steps above fair (shares stay <= the per-job cap)

    @property
    def size(self) -> int:
        return self.kmax - self.kmin + 1

    @property
    def start(self) -> int:
        """Index of the fair share."""
        return -self.kmin

    def values(self) -> np.ndarray:
        ks = np.arange(self.kmin, self.kmax + 1)
        return np.maximum(self.fair + ks * self.delta, 0.0)


def job_count(problem: Problem) -> int:
    """One inference job per camera, one retraining job per camera with any option."""
    return sum(1 + (1 if c.options else 0) for c in problem.cameras)


def fair_lattice(problem: Problem) -> Lattice:
    jobs = job_count(problem)
    cap = problem.job_cap
    fair = min(problem.gpus / jobs, cap) if jobs else 0.0
    # delta is the step from the fair start; when the fair share is below delta no job could give a
    # whole step (the original then cannot move at all), so the step becomes the fair share itself
    d = problem.delta if fair >= problem.delta - EPS or fair <= 0 else fair
    kmin = -math.floor((fair + EPS) / d)
    kmax = math.floor((cap - fair + EPS) / d)
    return Lattice(fair, d, kmin, max(kmax, 0))
