"""`ekya camera --config C --name X --triton-url HOST:PORT --controller-url http://HOST:PORT [--results DIR]`
(or `ekya-camera ...`): one camera's gRPC inference client, on any host that reaches the two endpoints.

From the config it reads only its source, the window length and crop size, the request timeout and, when
the URLs are not given, where the config says Triton and the directive endpoint are; never the data
directory. Its results go into its own directory (protocol/camera_results.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import urllib.parse
from pathlib import Path

from camera.settings import CameraSettings
from protocol.camera_results import default_results_dir


class EndpointError(ValueError):
    """A URL the camera cannot use, or none to use; the message says what to pass."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="deployment config (YAML)")
    parser.add_argument("--name", required=True, help="camera name from the config")
    parser.add_argument("--triton-url", help="Triton's gRPC endpoint, host:port (default: the config's external "
                                             "`triton.url`, or the embedded server's address and grpc_port)")
    parser.add_argument("--controller-url",
                        help="the controller's directive endpoint, http://host:port (default: the config's "
                             "`directives` address and port); the camera follows its directive from there")
    parser.add_argument("--results", type=Path,
                        help="where the camera writes its per-window results and live counters "
                             "(default: ./ekya-camera-results/<name>)")
    parser.add_argument("--windows", type=int, help="stop after this many windows")
    parser.add_argument("--wait-seconds", type=float, default=120.0,
                        help="how long to wait for the controller's first directive (default 120)")
    parser.add_argument("--metrics-port", type=int,
                        help="serve the camera's own Prometheus metrics (its video source up or down, requests "
                             "sent, failed, shed) on this port (0: a free one; default: none)")
    parser.add_argument("--metrics-address", default="127.0.0.1",
                        help="address of the metrics endpoint (default 127.0.0.1; 0.0.0.0 for a scraper "
                             "on another host)")
    parser.add_argument("--log-level", default="INFO")


def triton_url_for(given: str | None, settings: CameraSettings) -> str:
    """The gRPC host:port: the one given, else the config's; an error says which flag to pass."""
    url = given or settings.triton_url
    if url is None:
        raise EndpointError("no Triton URL: pass --triton-url HOST:PORT (the config's embedded "
                            "`triton.grpc_port` is 0, a free port chosen when the controller starts)")
    parts = urllib.parse.urlsplit(f"//{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if "://" in url or not parts.hostname or port is None:
        raise EndpointError(f"--triton-url: expected the gRPC endpoint as host:port, got {url!r}")
    return url


def controller_url_for(given: str | None, settings: CameraSettings) -> str:
    """The directive endpoint's http://host:port: the one given, else the config's."""
    url = given or settings.controller_url
    if url is None:
        raise EndpointError("no controller URL: pass --controller-url http://HOST:PORT (the config's "
                            "`directives` endpoint is disabled or on port 0, a free port chosen at start)")
    if not url.startswith(("http://", "https://")):
        raise EndpointError(f"--controller-url: expected http://host:port, got {url!r}")
    return url


def run(args: argparse.Namespace) -> int:
    from camera.client import CameraClient
    from camera.directives import HttpDirectiveWatcher
    from camera.settings import CameraSettingsError, load_camera_settings
    from protocol.camera_results import CameraResults
    from sources import SourceError, source_kind

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = load_camera_settings(args.config, args.name)
        triton_url = triton_url_for(args.triton_url, settings)
        controller_url = controller_url_for(args.controller_url, settings)
        context = dataclasses.replace(settings.context, triton_url=triton_url)  # an ONNX detector is served there
        frames = source_kind(settings.source.kind).open(settings.source, context)
    except (CameraSettingsError, EndpointError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = CameraResults(args.results or default_results_dir(args.name))
    results.root.mkdir(parents=True, exist_ok=True)
    if args.metrics_port is not None:
        from camera.metrics import serve_camera_metrics

        port = serve_camera_metrics(args.name, results.read_live, args.metrics_port, args.metrics_address)
        logging.getLogger("camera").info("%s: metrics on http://%s:%d/metrics", args.name, args.metrics_address, port)
    client = CameraClient(args.name, frames, triton_url, HttpDirectiveWatcher(controller_url, args.name), results,
                          request_timeout_s=settings.request_timeout_s)
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
    print(f"results: {results.root}")
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
