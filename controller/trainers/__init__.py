"""Trainer processes, from the controller's side: the pool that launches, watches and stops them with
their shares (`pool`), how a worker process is started (`launcher`: a fork server that has imported
torch, or a fresh interpreter) and how a CPU share is realised (`cpu_shares`: threads plus duty cycling).
"""

from .pool import (
    PUBLISH_SECONDS,
    WORKER_STARTUP_SECONDS,
    Finished,
    TrainerPool,
    kill_orphans,
    left_behind,
    worker_log_of,
)

__all__ = ["PUBLISH_SECONDS", "WORKER_STARTUP_SECONDS", "Finished", "TrainerPool", "kill_orphans", "left_behind",
           "worker_log_of"]
