"""How many threads a trainer gets for a CPU share: one rule for the controller, which launches trainers
with it (controller.trainers.cpu_shares pairs it with duty cycling), and for a worker run on its own."""

from __future__ import annotations

import math
import os


def max_trainer_threads(cores: int) -> int:
    """Trainers never take every core: one stays for serving (Triton, camera clients, the controller).
    OpenMP threads that get preempted stall each other at every barrier, which on an oversubscribed
    edge box costs far more than the thread would add."""
    return max(1, cores - 1)


def threads_for_share(share: float, cores: int) -> int:
    """ceil(share x cores) threads, at least one, at most max_trainer_threads(cores)."""
    return max(1, min(max_trainer_threads(cores), math.ceil(share * cores - 1e-9)))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset), at least one."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
