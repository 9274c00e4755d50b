"""controller/service.py: how the APScheduler jobs behave around the controller."""

from __future__ import annotations

import logging
import threading
import time

import pytest


def test_overlapping_runs_of_a_job_are_skipped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    # A job still running when its next run comes is skipped (max_instances=1), as the micro-profiler's
    # is during a window on a slow CPU: APScheduler's warning for it must not reach the console.
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    import controller.service  # noqa: F401 - installs the filter

    skipped, running = [], threading.Event()

    def slow_job() -> None:
        running.set()
        time.sleep(1.5)

    aps = BackgroundScheduler()
    aps.add_listener(lambda event: skipped.append(event.job_id), EVENT_JOB_MAX_INSTANCES)
    aps.add_job(slow_job, IntervalTrigger(seconds=0.25), id="profile-during", coalesce=True, max_instances=1)
    with caplog.at_level(logging.WARNING, logger="apscheduler"):
        aps.start()
        try:
            assert running.wait(5.0)
            deadline = time.monotonic() + 5.0
            while not skipped and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            aps.shutdown(wait=True)
    assert skipped, "the job never overlapped: nothing was checked"
    assert not [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]
