"""The `ekya` CLI: fast start-up, and `ekya triton serve` as a real long-running process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

EKYA = [sys.executable, "-m", "controller.cli"]


def test_help_is_fast_and_lists_commands():
    started = time.monotonic()
    result = subprocess.run(EKYA + ["--help"], capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 0
    for command in ("demo", "run", "status", "camera", "triton", "bootstrap", "simulate", "capacity"):
        assert command in result.stdout
    assert elapsed < 1.0, f"ekya --help took {elapsed:.2f}s"


def test_unknown_command_is_an_error():
    result = subprocess.run(EKYA + ["frobnicate"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "unknown command" in result.stderr


def test_triton_serve_runs_until_interrupted(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    process = subprocess.Popen(
        EKYA + ["triton", "serve", "--repository", str(repo), "--work-dir", str(tmp_path / "work"),
                "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"HTTP (http://\S+),", line)
        assert match, line
        with urllib.request.urlopen(match.group(1) + "/v2/health/ready", timeout=10) as response:
            assert response.status == 200
        key_file = tmp_path / "work" / "admin-key"
        assert key_file.is_file() and (key_file.stat().st_mode & 0o077) == 0
        assert key_file.read_text().strip() not in line + process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "stopped" in output


def test_triton_serve_reports_missing_key_env(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "EKYA_NO_SUCH_VAR"}
    result = subprocess.run(
        EKYA + ["triton", "serve", "--repository", str(tmp_path), "--admin-key-env", "EKYA_NO_SUCH_VAR"],
        capture_output=True, text=True, timeout=30, env=env,
    )
    assert result.returncode == 2 and "EKYA_NO_SUCH_VAR" in result.stderr
