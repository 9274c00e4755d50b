"""Running the controller: APScheduler drives the reconcile step, the labeller that golden-labels the
open window's spooled frames as they arrive and, if configured, the micro-profiler's runs before each
window closes.

The reconcile step runs at every window boundary of the deployment's clock (t0 + k*T: an interval job,
the retraining window) and, between boundaries, again after the delay each step asks for (about a second
while trainers run, else the next boundary). Steps never overlap (a lock); a boundary that comes while a
step still runs, or that fires late, is coalesced into one and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from controller.config import DeploymentConfig
from controller.runtime.deployment import Deployment
from controller.runtime.directives_http import DirectivesServer
from protocol.spool import SPOOL_CHUNK_SECONDS

log = logging.getLogger(__name__)

REQUEST_POLL_SECONDS = 1.0  # how often queued rollback requests are looked for between steps
TRITON_METRICS_SECONDS = 5.0  # how often Triton's metrics are read for the per-camera serving figures


class _QuietOverlapSkips(logging.Filter):
    """APScheduler warns whenever a job's run comes while its last one still runs. Every job here is
    max_instances=1 and coalesced on purpose: the 1-s trainer monitor while a publish keeps it busy, the
    labeller and the micro-profiler during the window whenever a pass takes longer than their interval
    (on a slow CPU, most of them). Expected, not news; a window tick that overlaps is logged in the
    controller's own words (run_controller's listener)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


logging.getLogger("apscheduler.scheduler").addFilter(_QuietOverlapSkips())


def run_controller(config: DeploymentConfig, *, scheduler: str | None = None, max_windows: int | None = None,
                   stop: threading.Event | None = None, keep_triton: bool = False,
                   metrics_port: int | None = None, on_started=None, bootstrap_progress: bool = True,
                   models_cache=None, camera_windows: int | None = None,
                   directives_port: int | None = None) -> Deployment:
    """Run until `stop` is set or `max_windows` windows are done; returns the (shut down) deployment."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    stop = stop or threading.Event()
    controller = Deployment(config, scheduler=scheduler, max_windows=max_windows,
                            bootstrap_progress=bootstrap_progress, models_cache=models_cache,
                            camera_windows=camera_windows)
    metrics_server = None
    directives_server = None
    aps = BackgroundScheduler(timezone=UTC)
    try:
        reconciler = controller.start()
        if config.metrics.enabled:
            port = config.metrics.port if metrics_port is None else metrics_port
            metrics_server = controller.metrics.serve(port, config.metrics.address)
            controller.metrics_url = metrics_server.url
            log.info("metrics on %s", metrics_server.url)
        if config.directives.enabled:  # up once the models serve: cameras wait for their first directive
            directives_server = DirectivesServer(
                controller.camera_channel, config.camera_names, window_seconds=config.window_seconds,
                metrics=controller.metrics).start(
                config.directives.port if directives_port is None else directives_port,
                config.directives_bind_address)
            controller.directives_url = directives_server.url
            log.info("camera directives on %s/v1/cameras", directives_server.url)
        if on_started is not None:
            on_started(controller)
        state = controller.state
        assert state is not None
        next_boundary = state.t0 + (state.window + 1) * state.window_seconds

        def on_event(event) -> None:
            if event.code == EVENT_JOB_MAX_INSTANCES and event.job_id == "window":
                log.warning("window tick came while the previous one was still running: coalesced")
            elif event.code == EVENT_JOB_MISSED and event.job_id == "window":
                log.warning("window tick missed its time: coalesced into the next run")
            elif event.code == EVENT_JOB_ERROR:
                log.error("%s job failed: %s", event.job_id, event.exception, exc_info=event.exception)

        def requeued_step() -> None:
            """A step, then the next one after the delay it asked for (one chain of one-off jobs)."""
            delay = 1.0
            try:
                delay = reconciler.reconcile(blocking=False)
            finally:
                if not stop.is_set() and not reconciler.done.is_set():
                    delay = min(max(delay, 0.05), state.window_seconds)
                    aps.add_job(requeued_step, DateTrigger(datetime.now(UTC) + timedelta(seconds=delay)),
                                misfire_grace_time=int(state.window_seconds))

        aps.add_listener(on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        aps.add_job(reconciler.reconcile, IntervalTrigger(seconds=state.window_seconds,
                                                          start_date=datetime.fromtimestamp(next_boundary, UTC)),
                    id="window", coalesce=True, max_instances=1, misfire_grace_time=int(state.window_seconds))
        if controller.supervisor is not None:
            # its own 1-s job, not the reconcile step's: a step holds its lock for seconds (closing,
            # planning) while the cameras' requests fail for as long as Triton is down
            aps.add_job(controller.supervisor.check, IntervalTrigger(seconds=1), id="triton-supervisor",
                        coalesce=True, max_instances=1)
        if controller.triton_figures is not None:  # never fails: Triton down only pauses the figures
            aps.add_job(controller.triton_figures.poll, IntervalTrigger(seconds=TRITON_METRICS_SECONDS),
                        id="triton-metrics", coalesce=True, max_instances=1)
        aps.add_job(reconciler.label_open_window, IntervalTrigger(seconds=SPOOL_CHUNK_SECONDS), id="label-ahead",
                    coalesce=True, max_instances=1)
        aps.add_job(reconciler.apply_requests, IntervalTrigger(seconds=REQUEST_POLL_SECONDS), id="requests",
                    coalesce=True, max_instances=1)  # `ekya rollback` waits for these
        ahead = config.microprofiler.ahead_seconds
        if 0 < ahead < state.window_seconds:
            aps.add_job(reconciler.profile_ahead,
                        IntervalTrigger(seconds=state.window_seconds,
                                        start_date=datetime.fromtimestamp(next_boundary - ahead, UTC)),
                        id="profile-ahead", coalesce=True, max_instances=1, misfire_grace_time=max(1, int(ahead / 2)))
        every = config.microprofiler.ahead_every_seconds
        if 0 < every < state.window_seconds:
            aps.add_job(reconciler.profile_ahead, IntervalTrigger(seconds=every), id="profile-during",
                        coalesce=True, max_instances=1)
        # Window 0 opens at t0 (just after start); a restarted controller that missed a boundary opens the
        # current window at once rather than a whole window late.
        first = datetime.fromtimestamp(max(state.t0, time.time()), UTC)
        aps.add_job(requeued_step, DateTrigger(first), misfire_grace_time=int(state.window_seconds))
        aps.start()
        while not stop.is_set() and not reconciler.done.is_set():
            stop.wait(0.5)
    finally:
        aps.shutdown(wait=True) if aps.running else None
        controller.shutdown(stop_triton=not keep_triton)
        if metrics_server is not None:
            metrics_server.close()
        if directives_server is not None:
            directives_server.close()
    return controller
