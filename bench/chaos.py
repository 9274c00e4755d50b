"""Chaos benchmark: a real deployment under camera load while its processes are killed and its files corrupted.

    python bench/chaos.py [--controller-kills 10] [--triton-kills 2] [--window-seconds 30] [--out DIR] [--json]

The real system runs (`ekya run` with its embedded Triton and trainer processes, two `ekya camera` clients
on synthetic drifting streams). Meanwhile this script kills -9 the controller at random moments (one kill
aimed at a publish in flight: a staged `pending-*.pt` checkpoint or a recorded intent), restarts it after a
short pause, kills -9 tritonserver while a controller supervises it, starts a second controller on the same
config (it must refuse and leave the live one alone) and corrupts a spooled chunk. After each controller
kill it checks that none of the dead controller's trainers, fork server or helpers outlives it.

Afterwards:
- state_agrees: the state's serving version of every camera is the version Triton's repository index says;
- lost_versions: retained repository versions (and the served versions' checkpoints) that are missing or
  that onnxruntime / torch cannot load;
- orphans: the dead controllers' processes still alive 5 s after each kill, plus anything of the deployment
  still alive after the final shutdown;
- windows_lost: windows with no record although a controller was up when they opened;
- disk_mb against disk_budget_mb: what the data directory holds at the end;
- requests / failed_outside_outages: the cameras' requests, and failures logged outside Triton's own
  outages (kill -> ready again, plus a few seconds for the clients' backoff).
Last line: JSON {"controller_kills", "triton_kills", "state_agrees", "orphans", "lost_versions", "disk_mb",
"disk_budget_mb", "requests", "failed_outside_outages", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe  # noqa: E402

EKYA = [sys.executable, "-m", "controller.cli"]
OUTAGE_GRACE_S = 5.0  # after Triton is ready again: the clients' backoff before their next try
ORPHAN_WAIT_S = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def say(text: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", flush=True)


# ------------------------------------------------------------------ processes, from /proc
def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time in ticks, state) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[19]), fields[0]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def descendants(root: int) -> dict[int, int]:
    """The processes below `root` (pid -> start time), tritonserver's subtree left out: it is meant to
    outlive the controller."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        stat = _stat(pid)
        if stat is not None:
            children.setdefault(stat[0], []).append(pid)
    found: dict[int, int] = {}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if "tritonserver" in cmdline(pid):
            continue
        stat = _stat(pid)
        if stat is None:
            continue
        found[pid] = stat[1]
        stack.extend(children.get(pid, []))
    return found


def alive(pids: dict[int, int]) -> list[int]:
    """Those still running (same start time: not a reused pid; a zombie counts as gone)."""
    survivors = []
    for pid, started in pids.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == started and stat[2] != "Z":
            survivors.append(pid)
    return survivors


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
            return response.status == 200
    except OSError:
        return False


# ------------------------------------------------------------------ the deployment under test
@dataclass
class Chaos:
    out: Path
    window_seconds: float
    disk_budget_mb: int
    seed: int
    controller: subprocess.Popen | None = None
    cameras: list[subprocess.Popen] = field(default_factory=list)
    downtime: list[tuple[float, float]] = field(default_factory=list)  # controller down (kill, ready)
    outages: list[tuple[float, float]] = field(default_factory=list)  # Triton down (kill, ready + grace)
    orphans: list[str] = field(default_factory=list)
    controller_kills: int = 0
    publish_kills: int = 0
    triton_kills: int = 0
    second_controller_exit: int | None = None
    corrupted: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def config_path(self) -> Path:
        return self.out / "chaos.yaml"

    def write_config(self) -> None:
        import yaml

        self.ports = {"grpc": free_port(), "http": free_port(), "metrics": free_port(), "controller": free_port(),
                      "directives": free_port()}
        config = {
            "cameras": [
                {"name": "cam0", "source": {"kind": "synthetic", "seed": 11, "fps": 10, "objects_per_frame": 4,
                                            "drift": {"speed": 0.8, "magnitude": 1.2, "start_window": 3}}},
                {"name": "cam1", "source": {"kind": "synthetic", "seed": 22, "fps": 10, "objects_per_frame": 4,
                                            "drift": {"speed": 0.6, "magnitude": 1.0, "start_window": 3}}},
            ],
            "edge_model": {"family": "resnet18", "input_size": 32, "hidden": 64},
            "golden_model": {"family": "resnet34", "input_size": 32, "hidden": 1024},
            "window_seconds": self.window_seconds,
            "resources": {"mode": "cpu", "cores": 2},
            "retraining_configs": [
                {"layers": "head", "epochs": 10, "subsample": 1.0, "hidden": 64},
                {"layers": "all", "epochs": 5, "subsample": 0.5, "hidden": 64, "lr": 0.001},
            ],
            "data": {"dir": str(self.data), "disk_budget_mb": self.disk_budget_mb},
            "triton": {"mode": "embedded", "grpc_port": self.ports["grpc"], "http_port": self.ports["http"],
                       "metrics_port": self.ports["metrics"]},
            "metrics": {"enabled": True, "port": self.ports["controller"]},
            "directives": {"port": self.ports["directives"]},  # fixed: a restarted controller is found there
        }
        self.out.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    # -- controller ------------------------------------------------------------------------------
    def start_controller(self, timeout_s: float = 900.0) -> float:
        log = open(self.out / "controller.log", "ab")
        self.controller = subprocess.Popen([*EKYA, "run", "--config", str(self.config_path)], stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                           start_new_session=True)
        log.close()
        url = f"http://127.0.0.1:{self.ports['controller']}/metrics"
        deadline = time.monotonic() + timeout_s
        while not http_ok(url):
            if self.controller.poll() is not None:
                raise RuntimeError(f"the controller exited with {self.controller.returncode}: see "
                                   f"{self.out / 'controller.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the controller did not come up in {timeout_s:.0f}s")
            time.sleep(0.2)
        return time.time()

    def kill_controller(self, during_publish: bool = False) -> None:
        assert self.controller is not None
        if during_publish:
            self._wait_for_publish()
        pid = self.controller.pid
        below = descendants(pid)
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        self.controller.wait()
        self.controller_kills += 1
        time.sleep(ORPHAN_WAIT_S)
        survivors = alive(below)
        self.orphans += [f"{p}: {cmdline(p)[:120]}" for p in survivors]
        for p in survivors:  # so that later kills are judged on their own
            os.kill(p, signal.SIGKILL)
        say(f"controller kill {self.controller_kills}{' (during a publish)' if during_publish else ''}: "
            f"{len(below)} process(es) below it, {len(survivors)} survived")
        time.sleep(random.uniform(0.5, 3.0))
        ready = self.start_controller()
        self.downtime.append((killed_at, ready))

    def _wait_for_publish(self, timeout_s: float | None = None) -> bool:
        """Until a publish is in flight (a staged checkpoint or a recorded intent)."""
        deadline = time.monotonic() + (timeout_s or 3 * self.window_seconds)
        state_file = self.data / "state.json"
        while time.monotonic() < deadline:
            if list((self.data / "checkpoints").glob("*/pending-*.pt")):
                self.publish_kills += 1
                return True
            try:
                if '"publishing": {' in state_file.read_text():
                    self.publish_kills += 1
                    return True
            except OSError:
                pass
            time.sleep(0.005)
        say("no publish seen in time: killing anyway")
        return False

    def second_controller(self) -> None:
        result = subprocess.run([*EKYA, "run", "--config", str(self.config_path)], capture_output=True, text=True,
                                cwd=ROOT, timeout=300)
        self.second_controller_exit = result.returncode
        assert self.controller is not None and self.controller.poll() is None, "the live controller died"
        say(f"second controller exited {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")

    # -- Triton ----------------------------------------------------------------------------------
    def kill_triton(self, timeout_s: float = 180.0) -> None:
        info = json.loads((self.data / "triton" / "server.json").read_text())
        pid = int(info["pid"])
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        self.triton_kills += 1
        url = f"http://127.0.0.1:{self.ports['http']}/v2/health/ready"
        time.sleep(0.5)
        deadline = time.monotonic() + timeout_s
        while not http_ok(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Triton was not restarted within {timeout_s:.0f}s of its kill")
            time.sleep(0.2)
        ready = time.time()
        self.outages.append((killed_at, ready + OUTAGE_GRACE_S))
        say(f"Triton kill {self.triton_kills}: serving again after {ready - killed_at:.1f}s on the same port")

    # -- cameras and files -----------------------------------------------------------------------
    def start_cameras(self) -> None:
        for name in ("cam0", "cam1"):
            log = open(self.out / f"{name}.log", "ab")
            self.cameras.append(subprocess.Popen(
                [*EKYA, "camera", "--config", str(self.config_path), "--name", name, "--log-level", "INFO",
                 "--triton-url", f"127.0.0.1:{self.ports['grpc']}",
                 "--controller-url", f"http://127.0.0.1:{self.ports['directives']}",
                 "--results", str(self.camera_results(name))],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True))
            log.close()

    def corrupt_a_chunk(self) -> None:
        chunks = sorted((self.data / "cameras" / "cam0" / "spool").rglob("chunk-*.npz"),
                        key=lambda p: p.stat().st_mtime)
        if not chunks:
            say("no spooled chunk to corrupt yet")
            return
        target = chunks[-1]
        target.write_bytes(os.urandom(max(64, target.stat().st_size // 2)))
        self.corrupted.append(str(target.relative_to(self.data)))
        say(f"corrupted {target.relative_to(self.data)}")

    def quarantined(self) -> list[str]:
        """What the controller moved to its quarantine folder (the corrupted chunk should be there)."""
        root = self.data / "quarantine"
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".reason")

    def camera_results(self, name: str) -> Path:
        """The camera client's own results directory: outside the data directory, as a remote camera's."""
        return self.out / "camera-results" / name

    def state(self) -> dict:
        return json.loads((self.data / "state.json").read_text())

    def wait_windows(self, closed: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.state().get("closed", -1) < closed and time.monotonic() < deadline:
            time.sleep(1.0)

    def stop_all(self) -> None:
        for process in [*self.cameras, self.controller]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.cameras, self.controller]:
            if process is None:
                continue
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# ------------------------------------------------------------------ the checks afterwards
def served_versions(chaos: Chaos) -> dict[str, int | None]:
    from controller.triton.client import TritonClient

    key = (chaos.data / "triton" / "admin-key").read_text().strip()
    with TritonClient(f"127.0.0.1:{chaos.ports['grpc']}", admin_key=key, timeout_s=10) as client:
        return {name: client.served_version(name) for name in ("cam0", "cam1")}


def state_agrees(chaos: Chaos) -> tuple[bool, dict]:
    """The state's serving versions against Triton's index (a few looks: a publish may be under way)."""
    seen: dict = {}
    for _ in range(10):
        served = served_versions(chaos)
        recorded = {name: cam["serving_version"] for name, cam in chaos.state()["cameras"].items()}
        seen = {"served": served, "recorded": recorded}
        if served == recorded:
            return True, seen
        time.sleep(1.0)
    return False, seen


def lost_versions(chaos: Chaos, keep: int = 2) -> list[str]:
    """Retained versions that are missing or do not load, and served checkpoints that do not load."""
    import numpy as np
    import onnxruntime as ort
    import torch

    lost = []
    repository = chaos.data / "model_repository"
    state = chaos.state()
    for name, cam in state["cameras"].items():
        versions = sorted(int(p.name) for p in (repository / name).iterdir() if p.name.isdigit())
        for version in [v for v in range(cam["serving_version"] - keep + 1, cam["serving_version"] + 1) if v >= 1]:
            path = repository / name / str(version) / "model.onnx"
            if version not in versions:
                continue  # retention or a never-loaded publish took it out: not served, not lost
            try:
                session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                shape = [1 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
                session.run(None, {session.get_inputs()[0].name: np.zeros(shape, np.float32)})
            except Exception as exc:
                lost.append(f"{name} v{version}: {exc}")
        if cam["serving_version"] not in versions:
            lost.append(f"{name} v{cam['serving_version']}: the served version is not in the repository")
        checkpoint = cam.get("serving_checkpoint")
        try:
            torch.load(checkpoint, map_location="cpu", weights_only=False)
        except Exception as exc:
            lost.append(f"{name} checkpoint {checkpoint}: {exc}")
    return lost


def windows_lost(chaos: Chaos) -> list[int]:
    """Windows with no record although a controller was up when they opened (and a while after)."""
    state = chaos.state()
    t0, length = state["t0"], state["window_seconds"]
    recorded = {record["window"] for record in state.get("history", [])}
    first = min(recorded, default=0)
    lost = []
    for window in range(first, state["window"] + 1):
        opens = t0 + window * length
        down = any(start - 1.0 <= opens + 5.0 and opens <= end + 5.0 for start, end in chaos.downtime)
        if window not in recorded and not down:
            lost.append(window)
    return lost


def camera_failures(chaos: Chaos) -> tuple[int, int, int]:
    """(requests, failed requests, failed requests logged outside Triton's outages)."""
    requests = failed = outside = 0
    for name in ("cam0", "cam1"):
        live = chaos.camera_results(name) / "live.json"
        if live.is_file():
            totals = json.loads(live.read_text())
            requests += int(totals.get("requests_total", 0))
            failed += int(totals.get("failed_requests_total", 0))
        for line in (chaos.out / f"{name}.log").read_text(errors="replace").splitlines():
            if "inference failed" not in line:
                continue
            try:
                when = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            if not any(start <= when <= end for start, end in chaos.outages):
                outside += 1
    return requests, failed, outside


def deployment_processes(chaos: Chaos) -> list[str]:
    """Anything still running that belongs to this deployment (by its data dir or config on the command
    line), after the final shutdown."""
    marks = (str(chaos.data), str(chaos.config_path))
    return [f"{pid}: {cmdline(pid)[:120]}" for pid in all_pids()
            if pid != os.getpid() and any(mark in cmdline(pid) for mark in marks)]


def disk_mb(path: Path) -> float:
    total = 0
    for entry in path.rglob("*"):
        try:
            if entry.is_file() and not entry.is_symlink():
                total += entry.stat().st_size
        except OSError:
            pass
    return total / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--controller-kills", type=int, default=10)
    parser.add_argument("--triton-kills", type=int, default=2)
    parser.add_argument("--window-seconds", type=float, default=30.0)
    parser.add_argument("--disk-budget-mb", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / ".ekya" / "bench-chaos")
    parser.add_argument("--models-cache", type=Path, default=ROOT / ".ekya" / "bench-chaos-models",
                        help="bootstrapped models of earlier runs, reused (the bootstrap checks they fit its config)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    random.seed(args.seed)
    if args.out.exists():
        shutil.rmtree(args.out)
    chaos = Chaos(args.out, args.window_seconds, args.disk_budget_mb, args.seed)
    chaos.write_config()
    started = time.time()
    if args.models_cache.is_dir():
        shutil.copytree(args.models_cache, chaos.data / "models")
    say(f"{describe()}; data in {chaos.data}; starting the controller (the first start bootstraps the models)")
    chaos.start_controller()
    shutil.copytree(chaos.data / "models", args.models_cache, dirs_exist_ok=True)  # for the next run
    chaos.start_cameras()
    chaos.wait_windows(0, 3 * args.window_seconds)
    triton_kills_at = set(random.sample(range(1, args.controller_kills), min(args.triton_kills,
                                                                             args.controller_kills - 1)))
    publish_kill_at = 3 % args.controller_kills
    try:
        for index in range(args.controller_kills):
            time.sleep(random.uniform(2.0, args.window_seconds))
            if index in triton_kills_at:
                chaos.kill_triton()
            if index == 2:
                chaos.second_controller()
            chaos.kill_controller(during_publish=index == publish_kill_at)
            if index == 1:
                chaos.corrupt_a_chunk()
        closed = chaos.state().get("closed", -1)
        say("all kills done; running two more windows undisturbed")
        chaos.wait_windows(closed + 2, 4 * args.window_seconds)
        agrees, versions = state_agrees(chaos)
        lost = lost_versions(chaos)
        gaps = windows_lost(chaos)
        requests, failed, outside = camera_failures(chaos)
    finally:
        chaos.stop_all()
    time.sleep(ORPHAN_WAIT_S)
    leftovers = deployment_processes(chaos)
    size = disk_mb(chaos.data)
    state = chaos.state()
    result = {
        "machine": describe(),
        "seconds": round(time.time() - started),
        "controller_kills": chaos.controller_kills,
        "publish_kills": chaos.publish_kills,
        "triton_kills": chaos.triton_kills,
        "second_controller_exit": chaos.second_controller_exit,
        "corrupted": chaos.corrupted,
        "quarantined": chaos.quarantined(),
        "windows": state.get("window", -1) + 1,
        "windows_lost": gaps,
        "state_agrees": agrees,
        "versions": versions,
        "orphans": len(chaos.orphans) + len(leftovers),
        "orphan_processes": chaos.orphans + leftovers,
        "lost_versions": len(lost),
        "lost_version_details": lost,
        "swaps": state.get("swaps", 0),
        "disk_mb": round(size, 1),
        "disk_budget_mb": args.disk_budget_mb,
        "requests": requests,
        "failed_requests": failed,
        "failed_outside_outages": outside,
        "triton_outage_seconds": [round(end - start - OUTAGE_GRACE_S, 1) for start, end in chaos.outages],
    }
    if not args.json:
        for key, value in result.items():
            if key not in ("machine",):
                say(f"{key}: {value}")
    print(json.dumps(result))
    ok = (agrees and not lost and not result["orphans"] and not gaps and size <= args.disk_budget_mb
          and outside == 0 and chaos.second_controller_exit == 3)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
