"""The reconcile step. Level-based and idempotent: whenever it runs, it compares the deployment's clock
and trainers with the persisted state and does what is due, then says how soon it wants to run again.

    observe  the clock's window, trainers that ended
    judge    each ended trainer: record it, publish its model if it beats the serving one
    close    a window that ended: stop its trainers, label and measure its data (WindowCloser)
    plan     the new window: micro-profile, forecast, the scheduler (WindowPlanner); or, when a job
             completed, re-plan with the time left
    act      the diff between the plan and what is applied (PlanApplier); serve winning trial models
"""

from __future__ import annotations

import logging
import threading

from controller.planner.microprofile import ConfigPruner, PredictionLedger
from controller.reconcile.acting import PlanApplier
from controller.reconcile.ahead import AheadProfiler
from controller.reconcile.closing import WindowCloser
from controller.reconcile.context import WindowContext
from controller.reconcile.judging import JobJudge
from controller.reconcile.planning import WindowPlanner
from controller.reconcile.records import WindowRecord
from controller.reconcile.rollback import Rollbacks
from controller.reconcile.scope import Scope
from controller.reconcile.truth import ServingTruth
from controller.state import CameraRecord
from controller.trainers import left_behind

log = logging.getLogger("controller")

POLL_SECONDS = 1.0  # how soon to look again while trainers run (a finished job is judged this soon)
END_STOP_TIMEOUT_S = 15.0


class Reconciler:
    def __init__(self, scope: Scope, *, max_windows: int | None = None) -> None:
        self.scope = scope
        self.max_windows = max_windows
        self.lock = threading.RLock()
        self.done = threading.Event()  # max_windows reached
        self.context: WindowContext | None = None
        self.closer = WindowCloser(scope)
        self.planner = WindowPlanner(scope)
        self.applier = PlanApplier(scope)
        self.judge = JobJudge(scope)
        self.truth = ServingTruth(scope)
        self.rollbacks = Rollbacks(scope)
        self.ahead = AheadProfiler(scope, self.planner, self.closer, self.lock, lambda: self.context)
        self._swaps_retained = -1  # state.swaps at the last retention pass

    # ------------------------------------------------------------------ lifecycle
    def recover(self, kill_orphans) -> None:
        """After a crash or a restart: every configured camera has a record, the planner's learned state
        (pruning, the prediction ledger) is restored, and the trainers the state says were running are
        settled. A trainer is killed with its controller, but one may have finished before: each is killed
        if it still runs (another host's pid, a pid reused), then judged from what it left on disk, so a
        finished job's better model is published rather than thrown away, and one without a result is
        recorded as failed with its reason."""
        state = self.scope.state
        for name in self.scope.config.camera_names:
            state.cameras.setdefault(name, CameraRecord())
        self.scope.pruners = {n: ConfigPruner.from_dict(d) for n, d in state.pruning.get("pruners", {}).items()}
        if "ledger" in state.pruning:
            self.scope.ledger = PredictionLedger.from_dict(state.pruning["ledger"])
        if state.jobs:
            log.info("resuming: window %d, %d trainer(s) recorded as running", state.window, len(state.jobs))
            killed = set(kill_orphans(state.jobs))
            for record in list(state.jobs.values()):
                if record.camera in state.cameras:
                    self.judge.adopt(left_behind(record, killed=record.job_id in killed))
            state.jobs.clear()
            self.scope.save()

    def begin(self) -> None:
        """The models serve: a fresh deployment's clock starts now; every camera is told the clock."""
        scope = self.scope
        if scope.state.window < 0:  # (bootstrapping the models may have taken a while)
            scope.state.t0 = scope.clock.time() + 1.0
        scope.metrics.set_window_length(scope.config.window_seconds)
        for name in scope.config.camera_names:
            scope.tell_camera(name)
            scope.observe(name)
        scope.save()
        self.retain()

    def shutdown(self) -> None:
        with self.lock:
            for item in self.scope.trainers.stop_all(timeout_s=10.0):
                log.info("%s: trainer %s stopped at shutdown", item.record.camera, item.record.job_id)
            self.scope.state.jobs.clear()
            self.scope.save()
            self.retain()

    # ------------------------------------------------------------------ the step
    def reconcile(self, blocking: bool = True) -> float:
        """One step; returns the seconds until it wants to run again."""
        if not self.lock.acquire(blocking=blocking):
            return POLL_SECONDS  # a step is running; it sees what this one would have
        try:
            scope = self.scope
            state = scope.state
            started = scope.clock.monotonic()
            self.truth.repair()
            self.rollbacks.apply_requests()  # asked for by `ekya rollback`
            ended = scope.trainers.poll()
            for item in ended:
                self.judge.judge(item, self.context)
            closed = state.closed
            current = self.current_window()
            if current > state.window and not self.done.is_set():
                self._next_window(current, started)
            elif ended and self.context is not None:
                self._replan()
            scope.save()
            if ended or state.closed != closed or state.swaps != self._swaps_retained:
                self.retain()  # after the save: what it keeps is reckoned from the state on disk
            return self.requeue_after()
        finally:
            self.lock.release()

    def retain(self) -> None:
        """A retention pass: the data directory back within its budget (a failure is logged: the next pass
        tries again), then the state saved (its oldest window records may have moved to the windows log)."""
        if self.scope.retention is None:
            return
        self._swaps_retained = self.scope.state.swaps  # (publishes beside the step are seen by the next one)
        try:
            self.scope.retention.enforce(self.scope.state)
        except Exception:
            log.exception("retention pass failed; the next one tries again")
        self.scope.save()

    def current_window(self) -> int:
        state = self.scope.state
        return int((self.scope.clock.time() - state.t0) // state.window_seconds)

    def requeue_after(self) -> float:
        state = self.scope.state
        to_boundary = state.t0 + (state.window + 1) * state.window_seconds - self.scope.clock.time()
        busy = bool(self.scope.trainers.running()) or (
            self.context is not None and any(self.context.job_pending(n) for n in self.scope.config.camera_names))
        return max(0.0, min(to_boundary, POLL_SECONDS) if busy else to_boundary)

    def _next_window(self, current: int, started: float) -> None:
        scope = self.scope
        state = scope.state
        if state.window >= 0 and current > state.window + 1:
            log.warning("late step: windows %d..%d passed unplanned (coalesced)", state.window + 1, current - 1)
        previous = current - 1
        close_seconds = 0.0
        if previous >= 0 and state.closed < previous:
            for item in scope.trainers.stop_all(timeout_s=END_STOP_TIMEOUT_S):
                self.judge.judge(item, self.context)
            closing = scope.clock.monotonic()
            self.closer.close(previous)
            close_seconds = scope.clock.monotonic() - closing
            state.closed = previous
            scope.save()
            scope.metrics.record_window(scope.clock.time() - scope.window_start(previous))
        if self.max_windows is not None and current >= self.max_windows:
            scope.metrics.tick(window=current)
            self.done.set()  # the current window stays unplanned: a later controller plans it
            return
        state.window = current
        self._open(current, close_seconds)
        scope.metrics.tick(window=current)
        scope.metrics.record_step(scope.clock.monotonic() - started)

    def _open(self, window: int, close_seconds: float) -> None:
        scope = self.scope
        context = self.context = WindowContext(window, scope.window_start(window))
        plan, profiling_seconds = self.planner.plan_window(context)
        scope.metrics.record_planning(plan.plan_seconds)
        record = WindowRecord(window=window, scheduler=scope.scheduler.name, plan_seconds=plan.plan_seconds,
                              planned_accuracy=plan.planned_accuracy)
        scope.events.opened(record, f"closed window {window - 1} in {close_seconds:.1f}s (golden labels, serving "
                                    f"accuracy); profiled {len(context.data)} camera(s) in {profiling_seconds:.1f}s; "
                                    f"planned in {plan.plan_seconds * 1000:.0f} ms at "
                                    f"t+{scope.clock.time() - context.started:.1f}s")
        self.applier.apply(context, plan)
        for alloc in plan.allocations:
            entry = record.camera(alloc.camera)
            cam = scope.state.cameras[alloc.camera]
            entry.config = alloc.config
            entry.inference_share = round(alloc.inference_share, 4)
            entry.training_share = round(alloc.training_share, 4)
            entry.stride = cam.stride
            entry.serving_accuracy = cam.serving_accuracy
            entry.error_growth = round(scope.growth(alloc.camera), 3)
        self._serve_trials(context)

    def _serve_trials(self, context: WindowContext) -> None:
        """Serve the micro-profiler's best trial model where it beats the serving model on the window's
        held-out data, biggest gain first: a drifted camera gets a better model seconds after the plan,
        while its full retraining (already started) runs; that job's model replaces it only if better."""
        scope = self.scope
        cameras = scope.state.cameras
        gains = {name: trial.accuracy - (cameras[name].serving_accuracy or 0.0)
                 for name, trial in context.trials.items()}
        for name in sorted(gains, key=gains.get, reverse=True):
            trial = context.trials.pop(name)
            scope.publisher.publish(name, trial.checkpoint, window=context.window, slot="trial",
                                    accuracy=trial.accuracy, replaced_accuracy=cameras[name].serving_accuracy or 0.0,
                                    data_window=context.window - 1, window_started=context.started,
                                    trained_as=trial.kind)

    def _replan(self) -> None:
        context = self.context
        scope = self.scope
        if context is None or context.plan is None:
            return
        elapsed = scope.clock.time() - context.started
        if elapsed >= scope.state.window_seconds - 1.0:
            return
        plan = self.planner.replan(context)
        if plan is None:
            self.applier.hand_on_finished_shares(context)
            return
        self.applier.apply(context, plan)
        scope.events.note(context.window, f"t+{elapsed:.0f}s re-planned: " + ", ".join(
            f"{a.camera} inf {a.inference_share:.2f}/train {a.training_share:.2f}" for a in plan.allocations))

    # ------------------------------------------------------------------ work beside the step
    def label_open_window(self) -> None:
        self.closer.label_open_window()

    def profile_ahead(self) -> None:
        self.ahead.run()

    def apply_requests(self) -> None:
        """Apply queued rollback requests now (a ~1 s poll, so that `ekya rollback` is prompt), unless a step
        runs: the step applies them itself."""
        if not self.lock.acquire(blocking=False):
            return
        try:
            self.rollbacks.apply_requests()
        finally:
            self.lock.release()
