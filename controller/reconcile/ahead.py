"""Micro-profiling before the window closes (microprofiler.ahead_seconds before it, and every
ahead_every_seconds during it): every camera whose job is done is profiled on the window's data so far,
and its best trial model serves at once where it beats the serving one by the margin. The rest of the
window and the start of the next are then served by a model trained on this window's frames, and the
next window's plan reuses the profile instead of profiling at the close."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from controller.reconcile.closing import WindowCloser
from controller.reconcile.context import AheadProfile, WindowContext
from controller.reconcile.planning import WindowPlanner
from controller.reconcile.scope import Scope

log = logging.getLogger("controller")

MIN_LABELLED = 20  # fewer golden-labelled crops so far: nothing to profile on yet


class AheadProfiler:
    def __init__(self, scope: Scope, planner: WindowPlanner, closer: WindowCloser, lock: threading.RLock,
                 context: Callable[[], WindowContext | None]) -> None:
        self.scope = scope
        self.planner = planner
        self.closer = closer
        self.lock = lock
        self.context = context
        self._running = threading.Lock()

    def run(self) -> None:
        """Profile ahead, unless a run is already under way (the before-the-close and the during-the-window
        schedules may meet)."""
        if not self._running.acquire(blocking=False):
            return
        try:
            self._run_once()
        finally:
            self._running.release()

    def _run_once(self) -> None:
        scope = self.scope
        state = scope.state
        window = state.window
        if not scope.scheduler.profiles or window < 0 or window <= state.closed:
            return
        self.closer.label_open_window()
        earlier = self.planner.ahead.get(window, {})
        training = {r.camera for r in scope.trainers.running()}
        context = self.context()
        profiles, chunks_seen = {}, {}
        for name in scope.config.camera_names:
            cam = state.cameras[name]
            if name in training or (context is not None and context.window == window and context.job_pending(name)):
                # its job (on the last window's data) is still to be judged against the serving model's
                # accuracy there, which a trial measured on this window's data would replace
                continue
            spool = scope.spool(name)
            chunks = len(spool.chunks(window))
            if name in earlier and earlier[name].chunks >= chunks:
                continue  # nothing new since this camera's last profile in this window (not read again)
            data = spool.read_window(window)[0].labelled()
            if data.num_labelled < MIN_LABELLED or not cam.serving_checkpoint:
                continue
            train, test = data.split(scope.config.data.holdout_fraction, seed=window)  # the close's split, in part
            try:
                profiles[name] = (cam.serving_version, self.planner.profile(name, train, test))
                chunks_seen[name] = chunks
            except Exception:  # the close profiles this camera again
                log.exception("%s: profiling ahead failed", name)
        with self.lock:
            if state.window != window or state.closed >= window:
                return  # the window closed meanwhile: its close profiles as usual
            self.planner.ahead = {window: self.planner.ahead.get(window, {})}  # a profile per camera: its latest
            if profiles:
                elapsed = scope.clock.time() - scope.window_start(window)
                scope.events.note(window, f"t+{elapsed:.0f}s profiled {len(profiles)} camera(s) ahead of the close")
            training = {r.camera for r in scope.trainers.running()}
            for name, (version, profile) in profiles.items():
                if state.cameras[name].serving_version != version or name in training:
                    continue  # a retrained model was published meanwhile, or a job started
                ahead = self.planner.ahead[window][name] = AheadProfile(profile, {version}, chunks_seen[name])
                if not self.planner.trial_wins(profile):
                    continue
                assert profile.trial_checkpoint is not None and profile.trial_accuracy is not None
                served = scope.publisher.publish(
                    name, profile.trial_checkpoint, window=window, slot="ahead_trial",
                    accuracy=profile.trial_accuracy, replaced_accuracy=profile.start_accuracy, data_window=window,
                    window_started=scope.window_start(window), trained_as=profile.trial_kind)
                if served.version is not None:
                    ahead.versions.add(served.version)
                    context = self.context()
                    if context is not None and context.window == window:
                        # a model trained on this window's frames is serving: no job on the last one's
                        context.finished.add(name)
            scope.save()
