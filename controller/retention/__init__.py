"""One disk budget for the whole data directory, kept by retention per kind.

    policy.py   what goes (pure: a DiskView and the Rules in, a Plan out)
    disk.py     the directory read into a DiskView, bytes by kind, a Plan carried out
    history.py  window records beyond what the state keeps (windows.jsonl), and reading them all back

The reconcile step runs a pass after a window closes and after a publish (a directory walk: milliseconds
for a few thousand files). The model repository counts when it is inside the data directory; one
elsewhere (an external Triton's) is not counted against the budget, but its versions are kept to
keep_versions all the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.config import DeploymentConfig
from controller.layout import DataLayout
from controller.metrics import ControllerMetrics
from controller.retention.disk import KINDS, DataDir, discard_bulk
from controller.retention.history import window_history
from controller.retention.policy import Plan, Rules, decide
from controller.state import ControllerState
from controller.triton.repository import ModelRepository

__all__ = ["KINDS", "Pass", "Retention", "Rules", "discard_bulk", "rules_for", "window_history"]

log = logging.getLogger("controller")
MB = 2**20


def rules_for(config: DeploymentConfig) -> Rules:
    data = config.data
    return Rules(budget_bytes=data.disk_budget_mb * MB, keep_versions=data.keep_versions,
                 keep_windows=data.keep_windows, keep_window_records=data.keep_window_records,
                 max_log_bytes=data.max_log_mb * MB)


@dataclass(frozen=True)
class Pass:
    """One retention pass: what it deleted and what the directory holds after it."""

    plan: Plan
    usage: dict[str, int]  # bytes by kind, after the pass
    budget_bytes: int
    seconds: float

    @property
    def total_bytes(self) -> int:
        return sum(self.usage.values())


class Retention:
    def __init__(self, layout: DataLayout, repository: ModelRepository, rules: Rules,
                 metrics: ControllerMetrics | None = None, clock: Callable[[], float] = time.time) -> None:
        self.data_dir = DataDir(layout, repository)
        self.rules = rules
        self.metrics = metrics
        self.clock = clock
        self._reported_over = False

    def enforce(self, state: ControllerState) -> Pass:
        """Delete what the rules let go, then (still over budget) the spool's oldest chunks; the state's
        oldest window records move to the windows log (the caller saves the state)."""
        started = time.monotonic()
        plan = decide(self.data_dir.view(state, self.clock()), self.rules)
        if not plan.empty:
            self.data_dir.apply(plan, state)
        usage = self.data_dir.usage()
        done = Pass(plan, usage, self.rules.budget_bytes, time.monotonic() - started)
        if self.metrics is not None:
            self.metrics.record_disk_usage(usage, self.rules.budget_bytes)
            self.metrics.record_retention(plan.freed)
        self._report(done)
        return done

    def _report(self, done: Pass) -> None:
        plan = done.plan
        if plan.freed_bytes:
            log.info("retention: freed %.1f MB (%s); data directory %.1f of %.0f MB (%.2fs)", plan.freed_bytes / MB,
                     ", ".join(f"{k} {v / MB:.1f}" for k, v in sorted(plan.freed.items()) if v),
                     done.total_bytes / MB, done.budget_bytes / MB, done.seconds)
        over = done.total_bytes > done.budget_bytes
        if over and not self._reported_over:  # once until it is back within budget
            log.error("retention: the data directory holds %.0f MB, over its %.0f MB budget, with only what must "
                      "be kept (%s): raise data.disk_budget_mb, or lower data.keep_versions / keep_windows",
                      done.total_bytes / MB, done.budget_bytes / MB,
                      ", ".join(f"{k} {v / MB:.0f} MB" for k, v in sorted(done.usage.items()) if v >= MB))
        self._reported_over = over
