"""One controller per deployment: an exclusive lock on the data directory, held for the controller's life.

A second controller on the same data directory would kill the first one's trainers as orphans, fight over
Triton and the state file: it is refused before it touches anything, with who holds the lock. The lock is
the kernel's (flock), so it goes with its process, kill -9 included: no stale lock to clean up.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path


class DeploymentLocked(RuntimeError):
    """Another controller holds the deployment's data directory."""


class DataDirLock:
    FILE = "controller.lock"

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / self.FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DeploymentLocked(f"another controller runs this deployment ({self._holder()}): its data "
                                   f"directory {self.path.parent} is locked; stop that one first") from None
        os.ftruncate(fd, 0)  # who holds it, for the message a second controller prints
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def _holder(self) -> str:
        try:
            holder = json.loads(self.path.read_text())
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"]))
            return f"pid {holder['pid']} on {holder['host']}, since {since}"
        except (OSError, ValueError, KeyError, TypeError):
            return "its pid unknown"


def lock_holder(root: Path) -> int | None:
    """The pid of the controller holding the deployment's lock (0: held, pid unknown), None when no
    controller runs. Read from the kernel's lock table without taking the lock: even a brief probe of it
    would refuse a controller starting at that moment. Where /proc/locks is unreadable, it probes."""
    path = Path(root) / DataDirLock.FILE
    try:
        st = path.stat()
        table = Path("/proc/locks").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return _probe(path)
    written = _written_pid(path)
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 4321 fe:00:2146420 0 EOF": the device may differ from stat's on overlayfs,
        # so the inode and the pid the holder wrote identify the lock where the device does not
        fields = line.split()
        if "FLOCK" not in fields or len(fields) < 6:
            continue
        pid, where = fields[-4], fields[-3]
        device, _, inode = where.rpartition(":")
        if inode != str(st.st_ino):
            continue
        same_device = device == f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
        if same_device or (pid.isdigit() and int(pid) == written):
            return int(pid) if pid.isdigit() else 0
    return None


def _written_pid(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _probe(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _written_pid(path) or 0
    finally:
        os.close(fd)  # (releases a lock it got)
    return None
