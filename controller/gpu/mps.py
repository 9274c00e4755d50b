"""The CUDA MPS control daemon: a private one per deployment (its own CUDA_MPS_PIPE_DIRECTORY and
CUDA_MPS_LOG_DIRECTORY under a directory the deployment owns), started, health-checked and stopped
cleanly (also at interpreter exit and as a context manager). It works in the GPU's default compute mode
and NEVER changes the compute mode or resets a GPU (nothing here calls nvidia-smi).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from .placement import env_for_share

__all__ = ["MPS_CONTROL", "MpsDaemon", "MpsError"]

MPS_CONTROL = "nvidia-cuda-mps-control"


class MpsError(RuntimeError):
    """The MPS control daemon is unavailable, failed to start or stop, or did not answer in time."""


class MpsDaemon:
    """A private MPS control daemon under `base_dir` (pipe/ and log/), owned by this process.

    `start()` is idempotent and adopts a daemon already running on the same pipe directory (e.g. one left
    by a killed controller); `stop()` sends `quit` and waits for the daemon to go. Both give up after
    `timeout_s` with MpsError. A started daemon is stopped at interpreter exit unless stopped before.
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        control_binary: str = MPS_CONTROL,
        timeout_s: float = 10.0,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.pipe_dir = self.base_dir / "pipe"
        self.log_dir = self.base_dir / "log"
        self.control_binary = control_binary
        self.timeout_s = timeout_s
        self._atexit_registered = False

    # ------------------------------------------------------------------------------------ plumbing
    def _binary(self) -> str:
        found = shutil.which(self.control_binary)
        if found is None:
            raise MpsError(
                f"{self.control_binary} not found on PATH: MPS needs the NVIDIA driver's utilities on this host "
                "(in a container: NVIDIA_DRIVER_CAPABILITIES must include compute and utility). "
                "Set `resources.mps: false` in the deployment config to run trainers without MPS."
            )
        return found

    def env(self) -> dict[str, str]:
        """The variables that make a process talk to this daemon."""
        return {"CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def _process_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env(), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        # The daemon must see every GPU: clients' CUDA_VISIBLE_DEVICES then name physical devices.
        env.pop("CUDA_VISIBLE_DEVICES", None)
        return env

    def _control(self, command: str) -> subprocess.CompletedProcess[str]:
        binary = self._binary()
        try:
            return subprocess.run(
                [binary],
                input=command + "\n",
                env=self._process_env(),
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise MpsError(
                f"`echo {command} | {self.control_binary}` did not answer within {self.timeout_s:g} s "
                f"(pipe dir {self.pipe_dir})"
            ) from None

    # ------------------------------------------------------------------------------------- queries
    def is_running(self) -> bool:
        """Health check: does a control daemon answer on our pipe directory?"""
        if not any(self.pipe_dir.glob("*")):
            return False  # nothing was ever started here: skip the subprocess
        return self._control("get_server_list").returncode == 0

    def server_pids(self) -> list[int]:
        """PIDs of the MPS servers the daemon runs (one per GPU user; empty until a client connects)."""
        result = self._control("get_server_list")
        if result.returncode != 0:
            raise MpsError(f"MPS control daemon not answering on {self.pipe_dir}: {_tail(result)}")
        return [int(tok) for tok in result.stdout.split() if tok.isdigit()]

    # ---------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        binary = self._binary()
        self.pipe_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.is_running():
            # Output goes to a file, not a pipe: a daemon that kept an inherited pipe open would make
            # us wait for EOF forever.
            start_log = self.log_dir / "ekya-start.log"
            with open(start_log, "w+", encoding="utf-8") as out:
                try:
                    result = subprocess.run(
                        [binary, "-d"],
                        env=self._process_env(),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        timeout=self.timeout_s,
                        check=False,
                    )
                except subprocess.TimeoutExpired:
                    raise MpsError(
                        f"`{self.control_binary} -d` did not return within {self.timeout_s:g} s"
                    ) from None
                out.seek(0)
                output = out.read().strip()[-400:] or "no output"
            if result.returncode != 0:
                raise MpsError(
                    f"`{self.control_binary} -d` failed (exit {result.returncode}): {output}; "
                    f"see {self.log_dir / 'control.log'}"
                )
            if not self._wait_for(running=True):
                raise MpsError(
                    f"the MPS control daemon started but does not answer on {self.pipe_dir}; "
                    f"see {self.log_dir / 'control.log'}"
                )
        if not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True

    def stop(self) -> None:
        """Ask the daemon to quit and wait until it is gone. A no-op if it is not running."""
        try:
            if self.is_running():
                result = self._control("quit")
                if result.returncode != 0 and self.is_running():
                    raise MpsError(f"`echo quit | {self.control_binary}` failed: {_tail(result)}")
                if not self._wait_for(running=False):
                    raise MpsError(
                        f"the MPS control daemon on {self.pipe_dir} did not exit within {self.timeout_s:g} s"
                    )
        finally:
            if self._atexit_registered:
                atexit.unregister(self._stop_at_exit)
                self._atexit_registered = False

    def _stop_at_exit(self) -> None:
        try:
            self.stop()
        except (MpsError, OSError) as exc:  # at exit there is no one left to raise to
            print(f"warning: could not stop the MPS control daemon: {exc}", flush=True)

    def _wait_for(self, *, running: bool) -> bool:
        deadline = time.monotonic() + self.timeout_s
        while True:
            if self.is_running() == running:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def env_for_share(
        self, share: float, device_index: int, *, memory_limit_bytes: int | None = None
    ) -> dict[str, str]:
        """`env_for_share` for a client of this daemon."""
        return env_for_share(
            share,
            device_index,
            pipe_dir=self.pipe_dir,
            log_dir=self.log_dir,
            memory_limit_bytes=memory_limit_bytes,
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MpsDaemon(base_dir={str(self.base_dir)!r})"


def _tail(result: subprocess.CompletedProcess[str], limit: int = 400) -> str:
    text = (result.stderr or "").strip() or (result.stdout or "").strip() or "no output"
    return text[-limit:]
