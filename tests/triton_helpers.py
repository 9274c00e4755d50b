"""Small real ONNX models and a server factory for the Triton tests (no mocks: real tritonserver)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from controller.triton.client import TritonClient
from controller.triton.repository import ModelRepository
from controller.triton.runtime import TritonRuntime
from controller.triton.server import TritonServer, free_port_settings
from controller.triton.serving import ServingManager

ADMIN_KEY = "test-admin-key-123"
INPUT_DIMS = (3, 16, 16)


def embedded_triton_section(**extra: object) -> dict:
    """A config's `triton:` section for an embedded server on free ports: tests never run on the standard
    8001/8000/8002 (another test, or a real deployment, may be there)."""
    return {"mode": "embedded", **free_port_settings(), **extra}


class TinyNet(nn.Module):
    def __init__(self, seed: int, nan: bool = False) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 6)
        self.nan = nan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))
        return y * float("nan") if self.nan else y


def export_tiny(path: Path, seed: int, nan: bool = False, dims: tuple[int, ...] = INPUT_DIMS) -> tuple[Path, np.ndarray, np.ndarray]:
    """Export a tiny model; returns (path, probe batch, PyTorch output on the probe)."""
    model = TinyNet(seed, nan).eval()
    probe = torch.rand(4, *dims, generator=torch.Generator().manual_seed(seed))
    torch.onnx.export(model, probe, str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    with torch.no_grad():
        expected = model(probe).numpy()
    return path, probe.numpy(), expected


@contextlib.contextmanager
def running_server(repo_root: Path, work_dir: Path, runtime: TritonRuntime, load_models: list[str] | None = None,
                   ) -> Iterator[tuple[TritonServer, TritonClient, ServingManager]]:
    repository = ModelRepository(repo_root)
    server = TritonServer(repo_root, work_dir, admin_key=ADMIN_KEY, runtime=runtime, load_models=load_models)
    info = server.start()
    client = TritonClient(info.grpc_url, admin_key=ADMIN_KEY, timeout_s=30)
    try:
        yield server, client, ServingManager(repository, client)
    finally:
        client.close()
        server.stop()
