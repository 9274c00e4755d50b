"""The embedded Triton Inference Server: a real `tritonserver` process on loopback.

Explicit model control, auto-complete off, gRPC/HTTP/metrics on chosen or free ports of one address
(the inference ports, gRPC and HTTP, optionally on another: all interfaces when a deployment exposes
them; metrics stay on the first), every API that changes the server's behaviour (model repository, logging, trace, shared memory)
restricted by an admin key on gRPC AND HTTP, logs to a file, readiness wait and clean shutdown.

The admin key never appears on the server's command line (/proc/PID/cmdline is world-readable) nor in its
environment: the command line carries a placeholder, and a tiny LD_PRELOAD shim (triton_config/keyshim)
substitutes the key, read from a pipe whose descriptor number is in EKYA_ADMIN_KEY_FD, into tritonserver's
argv before main() runs. The key is never logged.
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

from controller.triton.runtime import TritonRuntime, TritonUnavailableError, build_keyshim, prepare_runtime

log = logging.getLogger(__name__)


# APIs that change what the server does: reachable only with the admin key. Health, metadata, inference,
# model config and statistics stay open (cameras infer without the key).
RESTRICTED_APIS = ("model-repository", "logging", "trace", "shared-memory")
ADMIN_KEY_PLACEHOLDER = "@EKYA_ADMIN_KEY@"  # replaced in tritonserver's argv by the keyshim
ADMIN_KEY_FD_VAR = "EKYA_ADMIN_KEY_FD"
# tritonserver's own defaults: an embedded server is configured on these unless told otherwise
DEFAULT_PORTS = (8001, 8000, 8002)  # gRPC, HTTP, metrics


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
    """Whether a server could listen on the port now. SO_REUSEADDR as servers set it: the TIME_WAIT
    connections a killed server leaves behind do not hold the port, a listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


def free_port_settings(address: str = "127.0.0.1") -> dict[str, int]:
    """Three free ports as an embedded `triton:` config section's keys, for a config generated to run
    beside others (the demo's runs, benches, tests) instead of on the standard 8001/8000/8002."""
    ports = pick_ports(address)
    return {"grpc_port": ports.grpc, "http_port": ports.http, "metrics_port": ports.metrics}


def wait_for_ports(ports: TritonPorts, address: str = "127.0.0.1", timeout_s: float = 30.0) -> bool:
    """Wait until every port is free (a dead server's backend stubs may hold its sockets a little while)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if all(port_is_free(p, address) for p in (ports.grpc, ports.http, ports.metrics)):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


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
    """Create a random admin key readable only by this user; reuse the one already there (made private
    again if its mode was widened)."""
    target = Path(path)
    if target.is_file() and target.read_text().strip():
        if target.stat().st_mode & 0o077:
            log.warning("admin key file %s was readable by others; set back to 0600", target)
            os.chmod(target, 0o600)
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
    bind_address: str | None = None  # where gRPC and HTTP listen; None: `address`

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
        bind_address: str | None = None,
        load_models: list[str] | None = None,
        log_verbose: int = 0,
        runtime: TritonRuntime | None = None,
    ) -> None:
        if not admin_key:
            raise ValueError("an admin key is required: the model-control API is never left open")
        self.repository = Path(repository).resolve()
        self.work_dir = Path(work_dir).resolve()
        self.address = address  # clients connect here; the metrics port listens here
        self.bind_address = bind_address or address  # the inference ports (gRPC, HTTP) listen here
        self._admin_key = admin_key
        self._requested_ports = (grpc_port, http_port, metrics_port)
        self.load_models = list(load_models or [])
        self.log_verbose = log_verbose
        self._runtime = runtime
        self.process: subprocess.Popen[bytes] | None = None
        self.info: ServerInfo | None = None
        self.log_file = self.work_dir / "tritonserver.log"
        self._shm_prefix: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def command(self, runtime: TritonRuntime, ports: TritonPorts) -> list[str]:
        """The server's command line: world-readable, so the admin key is only a placeholder here."""
        shm_prefix = self._shm_prefix = f"ekya{os.getpid()}x{secrets.token_hex(3)}"
        restricted = ",".join(RESTRICTED_APIS)
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
            f"--grpc-address={self.bind_address}",
            f"--grpc-port={ports.grpc}",
            f"--http-address={self.bind_address}",
            f"--http-port={ports.http}",
            f"--metrics-address={self.address}",
            f"--metrics-port={ports.metrics}",
            "--allow-metrics=true",
            # Both protocols must be restricted: the gRPC flag alone leaves HTTP load/unload open.
            f"--grpc-restricted-protocol={restricted}:admin-key={ADMIN_KEY_PLACEHOLDER}",
            f"--http-restricted-api={restricted}:admin-key={ADMIN_KEY_PLACEHOLDER}",
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
            keyshim = runtime.keyshim or build_keyshim(self.work_dir / "runtime")
        except TritonUnavailableError as exc:
            raise TritonStartError(str(exc)) from exc
        ports = pick_ports(self.bind_address, *self._requested_ports)
        env = runtime.environment()
        env["LD_PRELOAD"] = str(keyshim)  # the shim unsets it again: the backend stubs do not inherit it
        key_read, key_write = os.pipe()  # the key travels through a pipe only this child inherits
        log_handle = open(self.log_file, "ab")
        try:
            os.write(key_write, self._admin_key.encode() + b"\n")
            os.close(key_write)
            env[ADMIN_KEY_FD_VAR] = str(key_read)
            self.process = subprocess.Popen(
                self.command(runtime, ports),
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.work_dir,
                pass_fds=(key_read,),
                start_new_session=True,  # its own process group: stop() reaps the backend stubs too
            )
        except OSError as exc:
            raise TritonStartError(f"cannot execute {runtime.binary}: {exc}") from exc
        finally:
            log_handle.close()
            os.close(key_read)
        self.info = ServerInfo(
            pid=self.process.pid,
            address=self.address,
            grpc_port=ports.grpc,
            http_port=ports.http,
            metrics_port=ports.metrics,
            repository=str(self.repository),
            log_file=str(self.log_file),
            bind_address=self.bind_address,
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
        """Alive (a zombie is not); does not reap our child, so stop() can still clean up its group."""
        if self.process is not None:
            return self.process.returncode is None and _pid_alive(self.process.pid)
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
        server = cls(info.repository, Path(info.log_file).parent, admin_key=admin_key, address=info.address,
                     bind_address=info.bind_address)
        server.info = info
        return server

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server and everything in its process group (the backend stubs); also cleans up
        after a server that died on its own (its stubs and shared-memory regions)."""
        process, self.process = self.process, None
        if process is None:
            if self.info is not None and _pid_alive(self.info.pid):
                _stop_group(self.info.pid, timeout_s)
            return
        if process.returncode is None and _pid_alive(process.pid):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop in %.0fs; killing it", timeout_s)
        # Backend stubs are in the same process group; make sure none is left behind. A dead server not
        # yet reaped (a zombie) still holds its group's id, so this cannot hit someone else's group.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.error("tritonserver pid %d did not exit after SIGKILL", process.pid)
        self._remove_shared_memory()

    def _remove_shared_memory(self) -> None:
        """The python backend's regions in /dev/shm: a server killed -9 leaves them behind."""
        if not self._shm_prefix:
            return
        for region in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            region.unlink(missing_ok=True)

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
