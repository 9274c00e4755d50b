"""controller/gpu/ on a machine without a GPU: NVML inventory, MPS environments, the MPS daemon manager.

The daemon manager's subprocess plumbing (private pipe/log dirs, start, health check, quit, timeouts) is
exercised against a stand-in `nvidia-cuda-mps-control` script that behaves like the real one at its
command-line interface: `-d` starts a daemon bound to $CUDA_MPS_PIPE_DIRECTORY, `get_server_list` on stdin
succeeds only while one is running there, `quit` stops it. The real binary is checked on the GPU machine.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller import gpu
from controller.gpu import GpuMemoryError, MpsDaemon, MpsError, env_for_share, mps_thread_percentage
from tests.repo import REPO_ROOT

HAS_GPU = gpu.nvml_available()
no_gpu_only = pytest.mark.skipif(HAS_GPU, reason="checks the no-driver behaviour; this machine has a GPU")

FAKE_MPS = r"""#!/bin/sh
# Stand-in for nvidia-cuda-mps-control: `-d` starts a detached daemon process bound to the pipe dir.
pipe="$CUDA_MPS_PIPE_DIRECTORY"; log="$CUDA_MPS_LOG_DIRECTORY"; pidfile="$pipe/fake-control.pid"
[ -n "$FAKE_MPS_HANG" ] && exec sleep 60
alive() {
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat" 2>/dev/null   # a zombie is gone
}
if [ "$1" = "-d" ]; then
  [ -d "$log" ] || { echo "log directory missing" >&2; exit 1; }
  alive && { echo "An instance of this daemon is already running" >&2; exit 1; }
  echo "started visible=${CUDA_VISIBLE_DEVICES-None} order=${CUDA_DEVICE_ORDER-}" >> "$log/control.log"
  # keeps the inherited stdout/stderr open, as a careless daemon would: start() must not wait on them
  setsid sleep 1000 </dev/null &
  echo $! > "$pidfile"
  exit 0
fi
read -r command
alive || { echo "Cannot find MPS control daemon process"; exit 1; }
case "$command" in
  get_server_list) echo 4242 ;;
  quit) kill "$(cat "$pidfile")" ;;
  *) exit 2 ;;
esac
"""


@pytest.fixture
def fake_mps(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "nvidia-cuda-mps-control"
    path.parent.mkdir()
    path.write_text(FAKE_MPS)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# ------------------------------------------------------------------------------------------------ NVML
@no_gpu_only
def test_inventory_is_empty_without_a_driver_and_says_why() -> None:
    assert gpu.gpu_inventory() == []
    assert gpu.gpu_count() == 0
    assert gpu.nvml_available() is False
    assert gpu.nvml_error()  # e.g. "NVMLError_LibraryNotFound: ..."
    summary = gpu.describe()
    assert summary["gpus"] == [] and summary["nvml"] is False


@no_gpu_only
def test_memory_check_fails_clearly_without_nvml() -> None:
    with pytest.raises(GpuMemoryError, match="cannot read GPU 0's memory"):
        gpu.check_free_memory(0, 1)


@pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU and driver")
def test_inventory_on_a_gpu_machine() -> None:  # pragma: no cover - runs on the GPU machine
    gpus = gpu.gpu_inventory()
    assert gpus and gpus[0].memory_total_bytes > gpus[0].memory_free_bytes > 0
    assert gpu.check_free_memory(0, 1) > 0
    with pytest.raises(GpuMemoryError):
        gpu.check_free_memory(0, gpus[0].memory_total_bytes * 2)
    assert gpu.choose_training_device(0, [0], 2**20) == 0  # real NVML: a MiB is free
    with pytest.raises(GpuMemoryError, match="no GPU has"):
        gpu.choose_training_device(0, [0], gpus[0].memory_total_bytes * 2)


@no_gpu_only
def test_a_trainer_starts_where_planned_when_nvml_cannot_read_the_gpu() -> None:
    # The worker checks again through CUDA; the controller does not refuse a job for want of NVML.
    assert gpu.free_memory_bytes(0) is None
    assert gpu.choose_training_device(1, [0, 1], 2**30) == 1


MiB = 2**20


@pytest.mark.parametrize(("free", "planned", "chosen"), [
    ({0: 4096 * MiB, 1: 8192 * MiB}, 0, 0),           # the plan's GPU has room: kept
    ({0: 512 * MiB, 1: 2048 * MiB, 2: 3072 * MiB}, 0, 2),  # full: the GPU with the most free memory
    ({0: 512 * MiB, 1: None, 2: 1536 * MiB}, 0, 2),    # an unreadable GPU is not a candidate to move to
    ({0: 1024 * MiB}, 0, 0),                           # exactly enough
])
def test_the_trainer_device_is_the_plans_unless_it_lacks_memory(
        free: dict[int, int | None], planned: int, chosen: int) -> None:
    assert gpu.choose_training_device(planned, sorted(free), 1024 * MiB, free.get) == chosen


def test_no_gpu_with_room_means_no_trainer_and_says_what_each_has() -> None:
    free = {0: 300 * MiB, 1: 900 * MiB}
    with pytest.raises(GpuMemoryError, match=r"1024 MiB free a trainer needs \(GPU 0 300 MiB, GPU 1 900 MiB free\)"):
        gpu.choose_training_device(1, [0, 1], 1024 * MiB, free.get)


# --------------------------------------------------------------------------------------- environments
@pytest.mark.parametrize(("share", "percent"), [(1.0, 100), (0.5, 50), (0.25, 25), (0.333, 33), (0.001, 1)])
def test_thread_percentage(share: float, percent: int) -> None:
    assert mps_thread_percentage(share) == percent


@pytest.mark.parametrize("share", [0.0, -0.1, 1.01, float("nan"), float("inf")])
def test_thread_percentage_rejects_shares_outside_0_1(share: float) -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        mps_thread_percentage(share)


def test_env_for_share_pins_the_device_and_sets_the_mps_percentage(tmp_path: Path) -> None:
    env = env_for_share(0.3, 2)
    assert env == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": "2",
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "30",
    }
    daemon = MpsDaemon(tmp_path / "mps")
    env = daemon.env_for_share(0.5, 0, memory_limit_bytes=8 * 2**30)
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == str(tmp_path / "mps" / "pipe")
    assert env["CUDA_MPS_LOG_DIRECTORY"] == str(tmp_path / "mps" / "log")
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=8192M"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    with pytest.raises(ValueError):
        env_for_share(0.5, -1)


# ------------------------------------------------------------------------------------------ MPS daemon
def test_missing_control_binary_is_a_clear_error(tmp_path: Path) -> None:
    daemon = MpsDaemon(tmp_path / "mps", control_binary="nvidia-cuda-mps-control-not-installed")
    with pytest.raises(MpsError, match=r"not found on PATH.*resources\.mps: false"):
        daemon.start()
    assert daemon.is_running() is False  # nothing started, no subprocess needed to say so


def test_real_control_binary_absent_here_gives_the_same_error(tmp_path: Path) -> None:
    if subprocess.run(["which", "nvidia-cuda-mps-control"], check=False, capture_output=True).returncode == 0:
        pytest.skip("nvidia-cuda-mps-control is installed here")
    with pytest.raises(MpsError, match="nvidia-cuda-mps-control not found"):
        MpsDaemon(tmp_path / "mps").start()


def test_daemon_start_health_stop_with_private_dirs(
    tmp_path: Path, fake_mps: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # must not leak into the daemon
    daemon = MpsDaemon(tmp_path / "mps", control_binary=str(fake_mps), timeout_s=5)
    assert daemon.is_running() is False
    daemon.start()
    try:
        assert daemon.is_running() is True
        assert daemon.server_pids() == [4242]
        assert (tmp_path / "mps" / "pipe").is_dir() and (tmp_path / "mps" / "log").is_dir()
        assert oct((tmp_path / "mps" / "pipe").stat().st_mode & 0o777) == oct(0o700)
        log = (tmp_path / "mps" / "log" / "control.log").read_text()
        assert "visible=None order=PCI_BUS_ID" in log
        pid = int((tmp_path / "mps" / "pipe" / "fake-control.pid").read_text())
        daemon.start()  # idempotent: the running daemon is adopted, not started twice
        assert int((tmp_path / "mps" / "pipe" / "fake-control.pid").read_text()) == pid
    finally:
        daemon.stop()
    assert daemon.is_running() is False
    assert not _process_alive(pid)
    daemon.stop()  # stopping a stopped daemon is a no-op


def test_context_manager_stops_the_daemon_even_on_error(tmp_path: Path, fake_mps: Path) -> None:
    daemon = MpsDaemon(tmp_path / "mps", control_binary=str(fake_mps), timeout_s=5)
    with pytest.raises(RuntimeError, match="boom"), daemon:
        assert daemon.is_running()
        raise RuntimeError("boom")
    assert daemon.is_running() is False


def test_daemon_is_stopped_at_interpreter_exit(tmp_path: Path, fake_mps: Path) -> None:
    """A controller that exits without stopping the daemon must not leave it running."""
    root, base = str(REPO_ROOT), str(tmp_path / "mps")
    script = (
        f"import sys; sys.path.insert(0, {root!r})\n"
        "from controller.gpu import MpsDaemon\n"
        f"d = MpsDaemon({base!r}, control_binary={str(fake_mps)!r}, timeout_s=5); d.start()\n"
        "print('started', d.is_running())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert "started True" in out.stdout
    assert MpsDaemon(tmp_path / "mps", control_binary=str(fake_mps)).is_running() is False


def test_a_hung_control_command_times_out_with_mps_error(
    tmp_path: Path, fake_mps: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = MpsDaemon(tmp_path / "mps", control_binary=str(fake_mps), timeout_s=0.5)
    (tmp_path / "mps" / "pipe").mkdir(parents=True)
    (tmp_path / "mps" / "pipe" / "control").touch()  # looks like a daemon might be there
    monkeypatch.setenv("FAKE_MPS_HANG", "1")
    started = time.monotonic()
    with pytest.raises(MpsError, match="did not answer within 0.5 s"):
        daemon.is_running()
    assert time.monotonic() - started < 10


def test_failed_daemon_start_reports_the_tool_output(tmp_path: Path) -> None:
    failing = tmp_path / "nvidia-cuda-mps-control"
    failing.write_text("#!/bin/sh\necho 'MPS is not supported on this GPU' >&2\nexit 3\n")
    failing.chmod(0o755)
    with pytest.raises(MpsError, match="exit 3.*not supported on this GPU"):
        MpsDaemon(tmp_path / "mps", control_binary=str(failing), timeout_s=2).start()


def test_gpu_package_never_touches_compute_mode_or_resets() -> None:
    source = "\n".join(path.read_text() for path in Path(gpu.__file__).parent.glob("*.py"))
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    code = re.sub(r'""".*?"""', "", code, flags=re.DOTALL)
    for forbidden in (
        "nvidia-smi",
        "nvmlDeviceSetComputeMode",
        "nvmlDeviceResetGpu",
        "--gpu-reset",
        "-c EXCLUSIVE",
    ):
        assert forbidden not in code


def _process_alive(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # a zombie counts as gone
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    return False
        except OSError:
            return False
        time.sleep(0.05)
    return True
