"""A child process that dies with its parent: prctl(PR_SET_PDEATHSIG, SIGKILL), Linux only.

SIGKILL, because it is the one signal a SIGSTOPped process (a duty-cycled trainer between its running
phases) cannot leave pending. The kernel sends it when the parent *thread* that forked the child exits,
not the parent process: whoever forks such a child must fork it from a thread that lives as long as the
process does (controller.trainers.launcher forks from one such thread). Elsewhere than Linux these are
no-ops: a trainer left behind is then killed by the next controller (controller.trainers.kill_orphans).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["PARENT_PID_ENV", "die_with_parent", "die_with_parent_named_in_env"]

# Set by a parent that starts a fresh interpreter: its own pid, the parent the child must die with.
PARENT_PID_ENV = "EKYA_DIE_WITH_PARENT"
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """Have the kernel SIGKILL this process when its parent dies. `parent_pid` is the parent as known from
    before the fork: if it has died already (this process was re-parented before the signal was set, so
    nothing would ever send it), this process is killed now. False where not supported (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent_pid:  # checked after the prctl: closes the race with the parent's death
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def die_with_parent_named_in_env() -> bool:
    """die_with_parent for the pid in PARENT_PID_ENV (removed from the environment, so nothing this process
    starts inherits it); False if the variable is not set."""
    value = os.environ.pop(PARENT_PID_ENV, "").strip()
    if not value.isdigit():
        return False
    return die_with_parent(int(value))
