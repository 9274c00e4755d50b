"""The embedded server's admin key stays private, and every API that changes the server needs it
(a real tritonserver on loopback; the key shim compiled by prepare_runtime)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from controller.triton.runtime import TritonUnavailableError, build_keyshim
from controller.triton.server import ADMIN_KEY_PLACEHOLDER, new_admin_key_file
from controller.triton.spec import ModelSpec
from tests.triton_helpers import ADMIN_KEY, INPUT_DIMS, export_tiny, running_server


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp
            members.append(int(entry.name))
    return members


def _post(url: str, body: dict, key: str | None = None) -> int:
    headers = {"Content-Type": "application/json"} | ({"admin-key": key} if key else {})
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_admin_key_is_on_no_command_line_nor_environment(tmp_path, triton_runtime):
    onnx = export_tiny(tmp_path / "m.onnx", 1)[0]
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (server, client, serving):
        serving.deploy(ModelSpec(name="cam-a", input_dims=INPUT_DIMS), onnx)  # the key works: load accepted
        assert client.model_ready("cam-a")
        members = _group_members(server.info.pid)
        assert len(members) >= 2, "no python backend stub running: its environment was not checked"
        secret = ADMIN_KEY.encode()
        for pid in members:
            for part in ("cmdline", "environ"):
                assert secret not in Path(f"/proc/{pid}/{part}").read_bytes(), f"key in /proc/{pid}/{part}"
        assert ADMIN_KEY_PLACEHOLDER.encode() in Path(f"/proc/{server.info.pid}/cmdline").read_bytes()
        stubs = [pid for pid in members if pid != server.info.pid]
        for pid in stubs:  # the shim's variables are not inherited
            assert b"EKYA_ADMIN_KEY_FD" not in Path(f"/proc/{pid}/environ").read_bytes()
            assert b"LD_PRELOAD" not in Path(f"/proc/{pid}/environ").read_bytes()
        assert ADMIN_KEY not in server.log_file.read_text()


def test_logging_trace_and_model_control_need_the_key(tmp_path, triton_runtime):
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (server, _client, _serving):
        http = server.info.http_url
        calls = [(f"{http}/v2/logging", {"log_verbose_level": 1}),
                 (f"{http}/v2/trace/setting", {"trace_rate": "2"}),
                 (f"{http}/v2/repository/index", {}),
                 (f"{http}/v2/systemsharedmemory/region/x/unregister", {})]
        for url, body in calls:
            assert _post(url, body) in (400, 401, 403), f"{url} accepted without the key"
            assert _post(url, body, key="wrong") in (400, 401, 403), f"{url} accepted a wrong key"
        for url, body in calls:
            assert _post(url, body, key=ADMIN_KEY) == 200, url
        with urllib.request.urlopen(f"{http}/v2/health/ready", timeout=10) as response:
            assert response.status == 200  # health stays open


def test_shim_refuses_to_run_a_program_with_the_placeholder_and_no_key(tmp_path, triton_runtime):
    assert triton_runtime.keyshim is not None
    env = {k: v for k, v in os.environ.items() if k != "EKYA_ADMIN_KEY_FD"} | {"LD_PRELOAD": str(triton_runtime.keyshim)}
    result = subprocess.run(["/bin/echo", f"--x=admin-key={ADMIN_KEY_PLACEHOLDER}"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 78 and "refusing to start" in result.stderr and result.stdout == ""
    read, write = os.pipe()
    os.write(write, b"s3cret\n")
    os.close(write)
    result = subprocess.run(["/bin/echo", f"--x=admin-key={ADMIN_KEY_PLACEHOLDER}"], pass_fds=(read,),
                            env=env | {"EKYA_ADMIN_KEY_FD": str(read)}, capture_output=True, text=True, timeout=30)
    os.close(read)
    assert result.returncode == 0 and result.stdout.strip() == "--x=admin-key=s3cret"


def test_no_c_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(TritonUnavailableError, match="C compiler"):
        build_keyshim(tmp_path / "runtime")


def test_admin_key_file_is_private_and_made_private_again(tmp_path):
    path = tmp_path / "triton" / "admin-key"
    key = new_admin_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    assert new_admin_key_file(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
