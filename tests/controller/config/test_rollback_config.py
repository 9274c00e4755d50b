"""The config's `rollback` section: automatic rollback on by default, its margin bounded, bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import RollbackConfig, load_config
from tests.controller.config.test_config import MINIMAL, errors_of, issue, write


def test_automatic_rollback_is_on_by_default_and_configurable(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL)).rollback == RollbackConfig(auto=True, margin=0.05)
    config = load_config(write(tmp_path, MINIMAL + "rollback: {auto: false, margin: 0.1}\n"))
    assert (config.rollback.auto, config.rollback.margin) == (False, 0.1)


@pytest.mark.parametrize(("text", "path", "word"), [
    ("rollback: {margin: 1.5}\n", "rollback.margin", "<= 1"),
    ("rollback: {margin: -0.1}\n", "rollback.margin", ">= 0"),
    ("rollback: {auto: sometimes}\n", "rollback.auto", "expected true or false"),
    ("rollback: {automatic: true}\n", "rollback.automatic", "unknown key"),
])
def test_bad_rollback_settings_name_their_key(tmp_path: Path, text: str, path: str, word: str) -> None:
    assert word in issue(errors_of(tmp_path, MINIMAL + text), path)
