"""network.expose: the embedded Triton's inference ports (gRPC, HTTP) listen on all interfaces, its
metrics port stays on loopback, and the model-control API keeps its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.triton.client import TritonClient, TritonClientError
from controller.triton.server import TritonPorts, TritonServer, http_ok
from tests.triton_helpers import ADMIN_KEY


def listening_addresses(port: int) -> set[str]:
    """Where TCP sockets listen at `port`, from /proc/net/tcp and tcp6 (what the kernel has): "0.0.0.0" and
    "::" are all interfaces (gRPC takes 0.0.0.0 as a dual-stack [::]), else the IPv4 address."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            if set(address) == {"0"}:
                found.add("0.0.0.0" if len(address) == 8 else "::")
            elif len(address) == 8:
                found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
            else:
                found.add(address)  # a specific IPv6 address (or a v4-mapped one): not all interfaces
    return found


ALL_INTERFACES = {"0.0.0.0", "::"}


def test_command_line_binds_the_inference_ports_where_asked(tmp_path: Path, triton_runtime) -> None:
    ports = TritonPorts(1, 2, 3)
    loopback = TritonServer(tmp_path, tmp_path, admin_key=ADMIN_KEY).command(triton_runtime, ports)
    assert {"--grpc-address=127.0.0.1", "--http-address=127.0.0.1", "--metrics-address=127.0.0.1"} <= set(loopback)
    exposed = TritonServer(tmp_path, tmp_path, admin_key=ADMIN_KEY, bind_address="0.0.0.0").command(
        triton_runtime, ports)
    assert {"--grpc-address=0.0.0.0", "--http-address=0.0.0.0", "--metrics-address=127.0.0.1"} <= set(exposed)
    assert any(a.startswith("--grpc-restricted-protocol=") for a in exposed)
    assert any(a.startswith("--http-restricted-api=") for a in exposed)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp")
def test_an_exposed_server_listens_on_all_interfaces_and_answers_on_loopback(tmp_path: Path, triton_runtime) -> None:
    (tmp_path / "repo").mkdir()
    server = TritonServer(tmp_path / "repo", tmp_path / "work", admin_key=ADMIN_KEY, runtime=triton_runtime,
                          bind_address="0.0.0.0")
    info = server.start()
    try:
        assert info.address == "127.0.0.1" and info.bind_address == "0.0.0.0"
        for port in (info.grpc_port, info.http_port):
            assert listening_addresses(port) and listening_addresses(port) <= ALL_INTERFACES
        assert listening_addresses(info.metrics_port) == {"127.0.0.1"}
        assert http_ok(f"{info.http_url}/v2/health/ready")
        open_client = TritonClient(info.grpc_url, timeout_s=10)  # no key: inference-side APIs only
        try:
            assert open_client.server_ready()
            with pytest.raises(TritonClientError):
                open_client.load("anything")
        finally:
            open_client.close()
        # a restarted controller finds it bound where it was (server.json)
        server.save_info(tmp_path / "server.json")
        again = TritonServer.attach(tmp_path / "server.json", ADMIN_KEY)
        assert again is not None and again.bind_address == "0.0.0.0"
    finally:
        server.stop()
