"""Who holds a deployment's lock, read without taking it (`ekya rollback` asks before it waits for the
controller): a probe that took the lock even briefly would refuse a controller starting at that moment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from controller.runtime.lock import DataDirLock, lock_holder


def test_the_holder_is_read_from_the_kernel_without_taking_the_lock(tmp_path: Path) -> None:
    assert lock_holder(tmp_path) is None  # never locked
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from controller.runtime.lock import DataDirLock; "
        f"DataDirLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lock_holder(tmp_path) == holder.pid
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert lock_holder(tmp_path) is None  # killed: its lock went with it (the file stays)
    controller = DataDirLock(tmp_path)
    controller.acquire()  # the look left nothing behind that would refuse a controller
    try:
        assert (tmp_path / DataDirLock.FILE).is_file()
    finally:
        controller.release()
