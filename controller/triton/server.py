"""The embedded Triton Inference Server: a real `tritonserver` process on loopback.

Explicit model control, auto-complete off, gRPC/HTTP/metrics bound to one address on chosen or free
ports, the model-repository API restricted by an admin key on gRPC AND HTTP, logs to a file,
readiness wait and clean shutdown. The admin key is passed to the server only; it is never logged.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from controller.triton.runtime import TritonRuntime, TritonUnavailableError, prepare_runtime

log = logging.getLogger(__name__)


class TritonStartError(RuntimeError):
    """The server did not come up; the message says why and where its log is."""


@dataclass(frozen=True)
class TritonPorts:
    grpc: int
    http: int
    metrics: int


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, address: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def pick_ports(address: str = "127.0.0.1", grpc: int = 0, http: int = 0, metrics: int = 0) -> TritonPorts:
    """Use the given ports (0 = any free one), failing clearly when a given one is taken."""
    chosen: list[int] = []
    for name, port in (("gRPC", grpc), ("HTTP", http), ("metrics", metrics)):
        if port:
            if not port_is_free(port, address):
                raise TritonStartError(f"{name} port {address}:{port} is already in use")
            chosen.append(port)
        else:
            port = free_port(address)
            while port in chosen:
                port = free_port(address)
            chosen.append(port)
    return TritonPorts(*chosen)


def load_admin_key(env_var: str | None = None, key_file: str | os.PathLike[str] | None = None) -> str:
    """Read the admin key from an environment variable or a file (never from the command line)."""
    if env_var:
        value = os.environ.get(env_var, "").strip()
        if not value:
            raise ValueError(f"admin key environment variable {env_var} is not set or empty")
        return value
    if key_file:
        path = Path(key_file)
        if not path.is_file():
            raise ValueError(f"admin key file {path} does not exist")
        value = path.read_text(encoding="utf-8").strip()
        if not value:
            raise ValueError(f"admin key file {path} is empty")
        return value
    raise ValueError("no admin key source given (an environment variable or a file)")


def new_admin_key_file(path: str | os.PathLike[str]) -> str:
    """Create a random admin key readable only by this user; reuse the one already there."""
    target = Path(path)
    if target.is_file() and target.read_text().strip():
        return target.read_text().strip()
    target.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


@dataclass
class ServerInfo:
    """What a client needs to reach a running server; persisted so a restarted controller can reattach."""

    pid: int
    address: str
    grpc_port: int
    http_port: int
    metrics_port: int
    repository: str
    log_file: str

    @property
    def grpc_url(self) -> str:
        return f"{self.address}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.metrics_port}/metrics"

    def to_dict(self) -> dict:
        return asdict(self)


class TritonServer:
    """A tritonserver child process. Use as a context manager, or call start()/stop()."""

    def __init__(
        self,
        repository: str | os.PathLike[str],
        work_dir: str | os.PathLike[str],
        *,
        admin_key: str,
        address: str = "127.0.0.1",
        grpc_port: int = 0,
        http_port: int = 0,
        metrics_port: int = 0,
        load_models: list[str] | None = None,
        log_verbose: int = 0,
        runtime: TritonRuntime | None = None,
    ) -> None:
        if not admin_key:
            raise ValueError("an admin key is required: the model-control API is never left open")
        self.repository = Path(repository).resolve()
        self.work_dir = Path(work_dir).resolve()
        self.address = address
        self._admin_key = admin_key
        self._requested_ports = (grpc_port, http_port, metrics_port)
        self.load_models = list(load_models or [])
        self.log_verbose = log_verbose
        self._runtime = runtime
        self.process: subprocess.Popen[bytes] | None = None
        self.info: ServerInfo | None = None
        self.log_file = self.work_dir / "tritonserver.log"

    # -- lifecycle -------------------------------------------------------------------------------
    def command(self, runtime: TritonRuntime, ports: TritonPorts) -> list[str]:
        shm_prefix = f"ekya{os.getpid()}x{secrets.token_hex(3)}"
        cmd = [
            str(runtime.binary),
            f"--model-repository={self.repository}",
            "--model-control-mode=explicit",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            "--exit-on-error=false",
            f"--backend-directory={runtime.backend_dir}",
            f"--cache-directory={runtime.cache_dir}",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            f"--grpc-address={self.address}",
            f"--grpc-port={ports.grpc}",
            f"--http-address={self.address}",
            f"--http-port={ports.http}",
            f"--metrics-address={self.address}",
            f"--metrics-port={ports.metrics}",
            "--allow-metrics=true",
            # Both protocols must be restricted: the gRPC flag alone leaves HTTP load/unload open.
            f"--grpc-restricted-protocol=model-repository:admin-key={self._admin_key}",
            f"--http-restricted-api=model-repository:admin-key={self._admin_key}",
            f"--log-verbose={self.log_verbose}",
        ]
        cmd += [f"--load-model={name}" for name in self.load_models]
        return cmd

    def start(self, timeout_s: float = 60.0) -> ServerInfo:
        if self.process is not None:
            raise TritonStartError("server already started")
        if not self.repository.is_dir() or not os.access(self.repository, os.R_OK | os.X_OK):
            raise TritonStartError(f"model repository {self.repository} is missing or unreadable")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            runtime = self._runtime or prepare_runtime(self.work_dir / "runtime")
        except TritonUnavailableError as exc:
            raise TritonStartError(str(exc)) from exc
        ports = pick_ports(self.address, *self._requested_ports)
        log_handle = open(self.log_file, "ab")
        try:
            self.process = subprocess.Popen(
                self.command(runtime, ports),
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=runtime.environment(),
                cwd=self.work_dir,
                start_new_session=True,  # its own process group: stop() reaps the backend stubs too
            )
        except OSError as exc:
            raise TritonStartError(f"cannot execute {runtime.binary}: {exc}") from exc
        finally:
            log_handle.close()
        self.info = ServerInfo(
            pid=self.process.pid,
            address=self.address,
            grpc_port=ports.grpc,
            http_port=ports.http,
            metrics_port=ports.metrics,
            repository=str(self.repository),
            log_file=str(self.log_file),
        )
        log.info("tritonserver pid %d: grpc %s, http %s, log %s", self.process.pid, self.info.grpc_url,
                 self.info.http_url, self.log_file)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.info

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None and self.info is not None
        deadline = time.monotonic() + timeout_s
        url = f"{self.info.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise TritonStartError(
                    f"tritonserver exited with code {code} during start-up: {self._log_tail()}\n(log: {self.log_file})"
                )
            if http_ok(url):
                return
            time.sleep(0.05)
        raise TritonStartError(
            f"tritonserver not ready after {timeout_s:.0f}s: {self._log_tail()}\n(log: {self.log_file})"
        )

    def _log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        interesting = [line for line in text if " E" in line[:3] or "error" in line.lower()] or text
        return "\n".join(interesting[-lines:]).replace(self._admin_key, "***")

    def is_running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.info is not None and _pid_alive(self.info.pid)

    def save_info(self, path: str | os.PathLike[str]) -> None:
        """Persist where the server is, so a restarted controller can reattach instead of restarting it."""
        from common.atomic import atomic_write_json

        assert self.info is not None
        atomic_write_json(path, self.info.to_dict())

    @classmethod
    def attach(cls, info_path: str | os.PathLike[str], admin_key: str) -> TritonServer | None:
        """Reattach to a server a previous controller started (it survives a controller crash, so the
        cameras keep being served); None when it is gone or not healthy."""
        import json

        try:
            info = ServerInfo(**json.loads(Path(info_path).read_text()))
        except (OSError, ValueError, TypeError):
            return None
        # Live, not ready: under strict readiness one model mid-reload makes the server "not ready",
        # and a busy edge box can take a while to answer, so give it a few tries.
        deadline = time.monotonic() + 10.0
        while not http_ok(f"{info.http_url}/v2/health/live", timeout_s=2.0):
            if not _pid_alive(info.pid) or time.monotonic() > deadline:
                return None
            time.sleep(0.2)
        server = cls(info.repository, Path(info.log_file).parent, admin_key=admin_key, address=info.address)
        server.info = info
        return server

    def stop(self, timeout_s: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None and self.info is not None and _pid_alive(self.info.pid):
            _stop_group(self.info.pid, timeout_s)
            return
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("tritonserver did not stop in %.0fs; killing it", timeout_s)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=5)
        # Backend stubs are in the same process group; make sure none is left behind.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _stop_group(pid: int, timeout_s: float) -> None:
    """Stop a server we did not start (reattached): TERM its group, wait, then KILL."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback only
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
