"""`ekya camera --config C --name X` (or `ekya-camera ...`): one camera's gRPC inference client."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from camera.settings import CameraSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="deployment config (YAML)")
    parser.add_argument("--name", required=True, help="camera name from the config")
    parser.add_argument("--triton-url", help="gRPC host:port (default: from the config / the embedded server)")
    parser.add_argument("--controller-url",
                        help="the controller's directive endpoint, http://host:port (its `directives` config): "
                             "the camera follows its directive from there, polled every second, instead of "
                             "from the file in the data directory")
    parser.add_argument("--windows", type=int, help="stop after this many windows")
    parser.add_argument("--wait-seconds", type=float, default=120.0,
                        help="how long to wait for the controller's first directive (default 120)")
    parser.add_argument("--log-level", default="INFO")


def triton_url_for(settings: CameraSettings, wait_s: float = 120.0) -> str:
    """The gRPC endpoint: the external URL, or the embedded server's (waiting for the controller)."""
    from protocol.files import CameraFiles

    if settings.triton_mode == "external":
        assert settings.triton_url is not None
        return settings.triton_url
    info = CameraFiles(settings.data_dir).triton_server_file
    deadline = time.monotonic() + wait_s
    while not info.is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no embedded Triton described at {info} after {wait_s:.0f}s; start `ekya run` first")
        time.sleep(0.2)
    data = json.loads(info.read_text())
    return f"{data['address']}:{data['grpc_port']}"


class EndpointResolver:
    """Where Triton is, read afresh at every (re)connection: the first time waiting for the controller,
    later briefly (a missing file then is one more failed request, retried)."""

    def __init__(self, settings: CameraSettings, first_wait_s: float = 120.0, later_wait_s: float = 1.0) -> None:
        self.settings = settings
        self._wait_s = first_wait_s
        self.later_wait_s = later_wait_s

    def __call__(self) -> str:
        url = triton_url_for(self.settings, self._wait_s)
        self._wait_s = self.later_wait_s
        return url


def run(args: argparse.Namespace) -> int:
    from camera.client import CameraClient
    from camera.directives import HttpDirectiveWatcher
    from camera.settings import CameraSettingsError, load_camera_settings
    from protocol.files import CameraFiles
    from sources import SourceError, source_kind

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.controller_url and not args.controller_url.startswith(("http://", "https://")):
        print(f"error: --controller-url: expected http://host:port, got {args.controller_url!r}", file=sys.stderr)
        return 2
    try:
        settings = load_camera_settings(args.config, args.name)
        frames = source_kind(settings.source.kind).open(settings.source, settings.context)
    except (CameraSettingsError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # The embedded server's address is read once the controller's directive is there (it is up by then):
    # the camera makes its first window's frames meanwhile. It is read again whenever the client reconnects.
    url = args.triton_url or EndpointResolver(settings)
    directives = HttpDirectiveWatcher(args.controller_url, args.name) if args.controller_url else None
    client = CameraClient(args.name, frames, CameraFiles(settings.data_dir), url,
                          label_sampling_rate=settings.label_sampling_rate,
                          spool_budget_bytes=settings.spool_budget_bytes,
                          request_timeout_s=settings.request_timeout_s, directives=directives)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        windows = client.run(stop, max_windows=args.windows, first_window_seconds=settings.window_seconds,
                             directive_timeout_s=args.wait_seconds)
    except (TimeoutError, InterruptedError) as exc:
        print(f"error: {exc or 'stopped before the controller started'}", file=sys.stderr)
        return 1
    for stats in windows:
        accuracy = "n/a" if stats.accuracy is None else f"{stats.accuracy:.3f}"
        print(f"{args.name} window {stats.window}: accuracy {accuracy}, {stats.processed_frames}/{stats.frames} "
              f"frames, {stats.failed_requests} failed requests")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ekya-camera", description="run one camera's gRPC inference client")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
