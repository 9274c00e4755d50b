"""Deployment-config defaults that the controller's config and the camera's own settings reader both
apply: one value each, so that a key left out of the file means the same on both sides."""

from __future__ import annotations

from pathlib import Path

LABEL_SAMPLING_RATE = 0.1  # fraction of frames spooled for golden labelling
REQUEST_TIMEOUT_S = 5.0  # a camera's inference request
DATA_DIR = Path(".ekya/data")  # relative: to the config file's directory
DISK_BUDGET_MB = 2048  # the whole data directory (each camera's spool: its part of it)
WINDOW_SECONDS = 200.0
EDGE_INPUT_SIZE = 64  # the crops a camera sends are the edge model's input size
HISTORY_WINDOWS = 1  # windows -k..-1 of every camera: the bootstrap's history
# Where a camera finds the controller's endpoints when its config leaves them at their defaults
LOOPBACK_ADDRESS = "127.0.0.1"  # `triton.address` and `directives.address`: nothing exposed by default
TRITON_GRPC_PORT = 8001  # the embedded server's `triton.grpc_port`
DIRECTIVES_PORT = 9401  # `directives.port`
