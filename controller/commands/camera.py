"""`ekya camera --config C --name X`: one camera's gRPC inference client."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="deployment config (YAML)")
    parser.add_argument("--name", required=True, help="camera name from the config")
    parser.add_argument("--triton-url", help="gRPC host:port (default: from the config / the embedded server)")
    parser.add_argument("--windows", type=int, help="stop after this many windows")
    parser.add_argument("--wait-seconds", type=float, default=120.0,
                        help="how long to wait for the controller's first directive (default 120)")
    parser.add_argument("--log-level", default="INFO")


def triton_url_for(config, layout, wait_s: float = 120.0) -> str:
    """The gRPC endpoint: the external URL, or the embedded server's (waiting for the controller)."""
    if config.triton.mode == "external":
        return config.triton.url
    info = layout.triton_dir / "server.json"
    deadline = time.monotonic() + wait_s
    while not info.is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no embedded Triton described at {info} after {wait_s:.0f}s; start `ekya run` first")
        time.sleep(0.2)
    data = json.loads(info.read_text())
    return f"{data['address']}:{data['grpc_port']}"


def run(args: argparse.Namespace) -> int:
    from controller.camera import CameraClient
    from controller.config import ConfigError, load_config
    from controller.layout import DataLayout
    from controller.sources import frame_source

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
        config.camera(args.name)
    except (ConfigError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    layout = DataLayout(Path(config.data.dir))
    # The embedded server's address is read once the controller's directive is there (it is up by then):
    # the camera makes its first window's frames meanwhile.
    url = args.triton_url or (lambda: triton_url_for(config, layout))
    client = CameraClient(args.name, frame_source(config, args.name), layout, url,
                          label_sampling_rate=config.label_sampling_rate,
                          spool_budget_bytes=int(config.data.disk_budget_mb * 2**20 / len(config.cameras)),
                          request_timeout_s=config.inference.request_timeout_s)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        windows = client.run(stop, max_windows=args.windows, first_window_seconds=config.window_seconds,
                             directive_timeout_s=args.wait_seconds)
    except (TimeoutError, InterruptedError) as exc:
        print(f"error: {exc or 'stopped before the controller started'}", file=sys.stderr)
        return 1
    for stats in windows:
        accuracy = "n/a" if stats.accuracy is None else f"{stats.accuracy:.3f}"
        print(f"{args.name} window {stats.window}: accuracy {accuracy}, {stats.processed_frames}/{stats.frames} "
              f"frames, {stats.failed_requests} failed requests")
    return 0
