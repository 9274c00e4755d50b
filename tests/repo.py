"""The repository's root, for tests that read its files (configs, rules, bench scripts)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
