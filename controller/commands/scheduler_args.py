"""Command-line arguments that name schedulers, checked against the registry (planner/schedulers.py)."""

from __future__ import annotations

import argparse


def scheduler_list(text: str) -> list[str]:
    """argparse type of a comma-separated list of registered schedulers ("thief,fair,noretrain")."""
    from controller.planner.schedulers import scheduler_names

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in scheduler_names()]
    if unknown or not names:
        given = ", ".join(unknown) or "(none given)"
        known = ", ".join(scheduler_names())
        raise argparse.ArgumentTypeError(f"unknown scheduler(s) {given}; choose from {known}")
    return names
