"""One controller per deployment: a second `ekya run` on a running deployment's config is refused before it
touches anything, and says who holds the deployment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.runtime.lock import DataDirLock, DeploymentLocked


def test_a_second_lock_is_refused_with_its_holder_until_the_first_is_released(tmp_path: Path) -> None:
    first, second = DataDirLock(tmp_path), DataDirLock(tmp_path)
    first.acquire()
    with pytest.raises(DeploymentLocked, match=f"pid {os.getpid()} on .*, since .*stop that one first"):
        second.acquire()
    assert not second.held
    first.release()
    second.acquire()  # released: the next controller gets it
    assert second.held
    second.release()


def test_the_lock_goes_with_a_killed_controller(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from controller.runtime.lock import DataDirLock; "
        f"DataDirLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DeploymentLocked, match=f"pid {holder.pid} "):
            DataDirLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    lock = DataDirLock(tmp_path)
    lock.acquire()  # kill -9 leaves no stale lock behind
    lock.release()


def test_ekya_run_on_a_running_deployment_exits_without_touching_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "deployment.yaml"
    config.write_text(yaml.safe_dump({"cameras": [{"name": "cam0", "source": {"kind": "synthetic"}}],
                                      "data": {"dir": str(data)}, "metrics": {"port": 0}}))
    running = DataDirLock(data)
    running.acquire()  # the live controller
    (data / "state.json").write_text("{}")  # what a second controller must not touch
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    try:
        result = subprocess.run([sys.executable, "-m", "controller.cli", "run", "--config", str(config)],
                                capture_output=True, text=True, timeout=120)
    finally:
        running.release()
    assert result.returncode == 3, result.stderr
    assert f"another controller runs this deployment (pid {os.getpid()}" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == before  # nothing created, nothing changed
