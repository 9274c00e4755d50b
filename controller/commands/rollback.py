"""`ekya rollback --config C --camera X [--to VERSION] [--wait SECONDS]`: serve an earlier version's
checkpoint again, as a new version (numbers are never reused), through the controller that runs the
deployment. The controller owns Triton and the state (it holds the data directory's lock), so this
command only queues a request there and waits for the controller's answer in its state.

Exit status: 0 rolled back; 1 the controller refused or failed it; 2 bad input (config, camera, version);
3 queued, not applied yet: no controller runs (the next `ekya run` applies it) or none did within --wait.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

POLL_SECONDS = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="deployment config (YAML)")
    parser.add_argument("--camera", required=True, help="the camera whose model to roll back")
    parser.add_argument("--to", type=int, metavar="VERSION",
                        help="the version whose checkpoint serves again (default: the one the serving version "
                             "replaced; repeated rollbacks go further back)")
    parser.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the running controller to apply it (default 60)")


def run(args: argparse.Namespace) -> int:
    from controller.config import ConfigError, load_config
    from controller.layout import DataLayout
    from controller.rollback_requests import RollbackQueue, RollbackRefused, RollbackRequest, resolve_target
    from controller.runtime.lock import lock_holder
    from controller.state import ControllerState, StateFileCorrupt

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    layout = DataLayout(Path(config.data.dir))
    try:
        state = ControllerState.load(layout.state_file)
    except StateFileCorrupt as exc:  # as `ekya status` says it: both paths and the way out
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the controller's state {layout.state_file}: {exc}", file=sys.stderr)
        return 1
    if state is None:
        print(f"error: no controller state at {layout.state_file}: no model has been published yet (has "
              f"`ekya run` been started?)", file=sys.stderr)
        return 2
    try:
        target = resolve_target(state, layout, config.camera_names, args.camera, args.to)
    except RollbackRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    serving = state.cameras[args.camera].serving_version
    request = RollbackRequest.new(args.camera, target)
    path = RollbackQueue(layout).submit(request)
    holder = lock_holder(layout.root)
    if holder is None:
        print(f"no controller is running this deployment: the rollback of {args.camera} from v{serving} to "
              f"v{target} is queued ({path}) and will be applied when `ekya run --config {args.config}` starts")
        return 3
    print(f"{args.camera}: asked the controller (pid {holder or '?'}) to serve v{target}'s checkpoint again "
          f"(v{serving} serves now)", flush=True)
    return _wait(layout, request.id, path, args.wait)


def _wait(layout, request_id: str, path: Path, wait_s: float) -> int:
    from controller.runtime.lock import lock_holder

    deadline = time.monotonic() + wait_s
    while True:
        outcome = _outcome(layout.state_file, request_id)
        if outcome is not None:
            break
        if lock_holder(layout.root) is None:
            print(f"the controller stopped before applying it: the request stays queued ({path}) and will be "
                  f"applied when `ekya run` starts again")
            return 3
        if time.monotonic() >= deadline:
            print(f"the controller has not applied it within {wait_s:g}s: the request stays queued ({path}); "
                  f"`ekya status` shows when it is done")
            return 3
        time.sleep(POLL_SECONDS)
    if outcome.error is not None:
        print(f"error: the rollback was not done: {outcome.error}", file=sys.stderr)
        return 1
    print(f"{outcome.camera}: rolled back from v{outcome.from_version} to v{outcome.to_version}'s checkpoint, "
          f"now serving as version {outcome.version}")
    return 0


def _outcome(state_file: Path, request_id: str):
    from controller.state import ControllerState

    try:
        state = ControllerState.load(state_file)
    except (OSError, ValueError):  # (written atomically: a reader sees a whole file, but be patient anyway)
        return None
    return None if state is None else state.rollback_for(request_id)
