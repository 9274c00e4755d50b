"""The `ekya` command line.

Start-up must stay fast (`ekya --help` well under a second), so this module imports nothing heavy:
each subcommand lives in its own module, imported only when that subcommand runs. A subcommand
module provides `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module implementing it, one-line help). Order is the order shown in --help.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("controller.commands.demo", "self-contained demo: 4 synthetic cameras, thief vs fair vs noretrain"),
    "run": ("controller.commands.run", "run the retraining controller for a deployment config"),
    "status": ("controller.commands.status", "show cameras, serving versions, accuracy, shares, jobs"),
    "rollback": ("controller.commands.rollback", "serve an earlier version of a camera's model again"),
    "camera": ("camera.cli", "run one camera's gRPC inference client"),  # the camera package, by path
    "check-source": ("camera.check_source", "open a camera's source and report frames, fps, crops"),
    "triton": ("controller.commands.triton", "embedded Triton server: serve a model repository"),
    "bootstrap": ("controller.commands.bootstrap", "train the initial edge models and the golden model"),
    "prepare": ("controller.commands.prepare", "turn a dataset (e.g. Cityscapes) into per-camera crops"),
    "simulate": ("controller.commands.simulate", "offline what-if simulation of schedulers on profiles"),
    "capacity": ("controller.commands.capacity", "fewest GPUs / most cameras per scheduler for a target"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ekya",
        description="Continuous retraining of per-camera video analytics models on an edge GPU server.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items())
        + "\n\nRun `ekya COMMAND --help` for a command's options.",
    )
    parser.add_argument("command", nargs="?", choices=list(SUBCOMMANDS), metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    name = argv[0]
    if name not in SUBCOMMANDS:
        top.error(f"unknown command {name!r}; choose from {', '.join(SUBCOMMANDS)}")
    module_name, help_ = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"ekya {name}", description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
