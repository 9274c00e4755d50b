"""`ekya bootstrap`: train (or reuse from the cache) the initial edge models and the golden model."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path,
                        help="a deployment config: bootstrap its cameras with its settings, into <data.dir>/models "
                             "(the options below, but --force and --json, are then not used)")
    parser.add_argument("--cameras", type=int, default=4, help="number of synthetic cameras (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="camera seed set (default 0)")
    parser.add_argument("--crop-size", type=int, default=64, help="crop size of the streams (default 64)")
    parser.add_argument("--data-dir", default=".ekya/models", help="model cache directory")
    parser.add_argument("--model", default="resnet18",
                        choices=["resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5"], help="edge model")
    parser.add_argument("--input-size", type=int, default=64, help="edge model input size (224 on GPU)")
    parser.add_argument("--per-camera", action="store_true", help="one edge model per camera")
    parser.add_argument("--no-golden", action="store_true", help="skip the golden model")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--force", action="store_true", help="retrain even if the cache matches")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")


def run(args: argparse.Namespace) -> int:
    from trainer.progress import show_progress_lines

    # Progress goes to stderr (bars on a terminal, log lines otherwise), so stdout stays the result alone.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    show_progress_lines()

    if args.config is not None:
        result = _bootstrap_deployment(args)
        if result is None:
            return 2
        if result == "nothing":
            message = "nothing to train: the edge and golden models are the config's files (checked)"
            print(json.dumps({"trained": False, "message": message}) if args.json else message)
            return 0
    else:
        from trainer.bootstrap import BootstrapSettings, bootstrap
        from trainer.streams.synthetic import default_cameras

        if args.cameras < 1:
            print("ekya bootstrap: --cameras must be >= 1")
            return 2
        cameras = default_cameras(args.cameras, seed=args.seed, crop_size=args.crop_size)
        settings = BootstrapSettings(edge_family=args.model, edge_input_size=args.input_size,
                                     per_camera=args.per_camera, golden=not args.no_golden)
        result = bootstrap(cameras, settings, args.data_dir, device=args.device, progress=not args.json,
                           force=args.force)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        state = "reused cache" if result.reused else f"trained in {result.seconds:.1f} s"
        print(f"bootstrap {result.key}: {state} -> {result.directory}")
        for name, acc in result.accuracy.items():
            print(f"  {name:<16} val accuracy {acc:.3f}")
    return 0


def _bootstrap_deployment(args: argparse.Namespace):
    """The deployment's bootstrap (what `ekya run` would train at its first start): its model files checked
    first, then what they do not give trained; None on bad input, "nothing" when the files give both."""
    from controller.bootstrap_settings import bootstrap_cache_dir, bootstrap_for
    from controller.config import ConfigError, load_config
    from controller.user_models import UserModelError, check_user_models
    from sources import SourceError
    from trainer.bootstrap import BootstrapDataError

    try:
        config = load_config(args.config)
        user = check_user_models(config, bootstrap_cache_dir(config))
        edge, golden = user.edge_checkpoint is None, config.golden_model.onnx is None
        if not edge and not golden:
            return "nothing"
        return bootstrap_for(config, progress=not args.json, force=args.force, edge=edge, golden=golden)
    except (ConfigError, SourceError, BootstrapDataError, UserModelError) as exc:
        print(f"ekya bootstrap: {exc}", file=sys.stderr)
        return None
