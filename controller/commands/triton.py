"""`ekya triton serve`: run the embedded tritonserver on a model repository until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    serve = sub.add_parser("serve", help="serve a model repository with the embedded tritonserver")
    serve.add_argument("--repository", type=Path, default=Path("model_repository"), help="model repository root")
    serve.add_argument("--work-dir", type=Path, default=Path(".ekya/triton"),
                       help="runtime copy of Triton, its log and (if generated) the admin key file")
    serve.add_argument("--address", default="127.0.0.1", help="address for gRPC, HTTP and metrics")
    serve.add_argument("--grpc-port", type=int, default=8001, help="0 picks a free port")
    serve.add_argument("--http-port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument("--metrics-port", type=int, default=8002, help="0 picks a free port")
    key = serve.add_mutually_exclusive_group()
    key.add_argument("--admin-key-env", metavar="VAR", help="environment variable holding the admin key")
    key.add_argument("--admin-key-file", type=Path, help="file holding the admin key")
    serve.add_argument("--load", default="all", help="models to load at start: all, none, or a comma list")


def run(args: argparse.Namespace) -> int:
    from controller.triton.repository import ModelRepository
    from controller.triton.server import TritonServer, TritonStartError, load_admin_key, new_admin_key_file

    try:
        if args.admin_key_env or args.admin_key_file:
            admin_key = load_admin_key(args.admin_key_env, args.admin_key_file)
            key_note = f"admin key from {'$' + args.admin_key_env if args.admin_key_env else args.admin_key_file}"
        else:
            key_path = args.work_dir / "admin-key"
            admin_key = new_admin_key_file(key_path)
            key_note = f"admin key in {key_path} (mode 0600)"
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.repository.is_dir():
        print(f"error: model repository {args.repository} does not exist", file=sys.stderr)
        return 2
    repository = ModelRepository(args.repository)
    if args.load == "all":
        models = repository.loadable()
    elif args.load == "none":
        models = []
    else:
        models = [m.strip() for m in args.load.split(",") if m.strip()]
    server = TritonServer(args.repository, args.work_dir, admin_key=admin_key, address=args.address,
                          grpc_port=args.grpc_port, http_port=args.http_port, metrics_port=args.metrics_port,
                          load_models=models)
    try:
        info = server.start()
    except TritonStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"tritonserver ready (pid {info.pid}): gRPC {info.grpc_url}, HTTP {info.http_url}, "
          f"metrics {info.metrics_url}")
    print(f"models loaded: {', '.join(models) or '(none)'}; {key_note}; log {info.log_file}")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        while not done.wait(1.0):
            if not server.is_running():
                print(f"error: tritonserver exited unexpectedly; see {info.log_file}", file=sys.stderr)
                return 1
    finally:
        server.stop()
    print("tritonserver stopped")
    return 0
