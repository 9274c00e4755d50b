"""A CPU share is realised: a process at share s of the machine gets about s of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from controller.trainers.cpu_shares import (
    DutyCycler,
    cpu_seconds,
    cpu_throughput_points,
    duty_for_share,
    threads_for_share,
)

BUSY = "import time\nwhile True: pass\n"


def test_thread_and_duty_arithmetic():
    assert threads_for_share(0.25, 2) == 1 and duty_for_share(0.25, 2, 1) == pytest.approx(0.5)
    # One core always stays for serving: on 2 cores a trainer never gets more than one thread.
    assert threads_for_share(0.7, 2) == 1 and duty_for_share(0.7, 2, 1) == 1.0
    assert threads_for_share(1.0, 2) == 1
    assert threads_for_share(1.0, 8) == 7 and threads_for_share(0.01, 16) == 1
    # threads x duty = share x cores, up to the cap
    for share in (0.05, 0.3, 0.55, 0.85):
        t = threads_for_share(share, 8)
        assert t * duty_for_share(share, 8, t) == pytest.approx(share * 8)
    # The planner's view of it: no throughput beyond the cap.
    curve = cpu_throughput_points(2)
    assert curve[0.25] == 0.25 and curve[0.5] == 0.5 and curve[1.0] == 0.5


@pytest.mark.parametrize("share", [0.1, 0.25])
def test_duty_cycled_process_gets_its_share(share):
    cores = os.cpu_count() or 1
    process = subprocess.Popen([sys.executable, "-c", BUSY])
    cycler = DutyCycler(cores=cores, period_s=0.1)
    try:
        time.sleep(0.3)
        cycler.set_share(process.pid, share, threads=1)
        time.sleep(0.3)
        start_cpu, start = cpu_seconds(process.pid), time.monotonic()
        time.sleep(3.0)
        used = (cpu_seconds(process.pid) - start_cpu) / (time.monotonic() - start)
        # One thread can use at most one core; the share asks for share*cores of them.
        want = min(1.0, share * cores)
        assert used == pytest.approx(want, abs=0.15), f"got {used:.2f} cores, wanted {want:.2f}"
    finally:
        cycler.remove(process.pid)
        cycler.close()
        process.kill()
        process.wait()


def test_removed_process_is_left_running():
    process = subprocess.Popen([sys.executable, "-c", BUSY])
    cycler = DutyCycler(cores=2, period_s=0.1)
    try:
        cycler.set_share(process.pid, 0.05, threads=1)
        time.sleep(0.5)
        cycler.remove(process.pid)
        time.sleep(0.1)
        before = cpu_seconds(process.pid)
        time.sleep(1.0)
        assert cpu_seconds(process.pid) - before > 0.5  # running freely again, not left stopped
    finally:
        cycler.close()
        process.kill()
        process.wait()


def test_start_up_runs_unthrottled_until_ready():
    """A worker's start-up is not duty-cycled: cycling starts when its ready check first passes."""
    process = subprocess.Popen([sys.executable, "-c", BUSY])
    cycler = DutyCycler(cores=2, period_s=0.1)
    ready = {"now": False}
    try:
        cycler.set_share(process.pid, 0.05, threads=1, ready=lambda: ready["now"])
        time.sleep(0.3)
        before, start = cpu_seconds(process.pid), time.monotonic()
        time.sleep(1.5)
        free = (cpu_seconds(process.pid) - before) / (time.monotonic() - start)
        assert free > 0.6, f"{free:.2f} cores before ready: throttled during start-up"
        ready["now"] = True
        time.sleep(0.3)
        before, start = cpu_seconds(process.pid), time.monotonic()
        time.sleep(2.0)
        cycled = (cpu_seconds(process.pid) - before) / (time.monotonic() - start)
        assert cycled == pytest.approx(0.1, abs=0.12), f"{cycled:.2f} cores at a 0.05 share of 2 once ready"
    finally:
        cycler.remove(process.pid)
        cycler.close()
        process.kill()
        process.wait()
