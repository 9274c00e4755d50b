"""Reading a deployment config: YAML text (kept as a node tree too, for line numbers) -> a validated
`DeploymentConfig`, or a `ConfigError` that lists every problem (never a pydantic traceback). Relative
paths in the file are resolved against the file's directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError, ConfigIssue, describe_kind, issues_from_validation
from .schema import DeploymentConfig

__all__ = ["load_config", "parse_config"]


def load_config(path: str | os.PathLike[str]) -> DeploymentConfig:
    """Read and validate a deployment config file. Raises ConfigError (never a pydantic traceback)."""
    file = Path(path)
    source = str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [ConfigIssue("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read the file: {exc}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigIssue("", f"not valid YAML: {problem}", line)]) from None
    return parse_config(data, base_dir=file.resolve().parent, source=source, _node=node)


def parse_config(
    data: Any,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    source: str = "<config>",
    _node: yaml.Node | None = None,
) -> DeploymentConfig:
    """Validate an already-parsed config mapping; relative paths resolve against `base_dir`."""
    if data is None:
        raise ConfigError(
            source, [ConfigIssue("", "the config is empty; expected a mapping with at least `cameras`")]
        )
    if not isinstance(data, Mapping):
        problem = f"expected a mapping of keys at the top level, got {describe_kind(data)}"
        raise ConfigError(source, [ConfigIssue("", problem)])
    context = {"base_dir": Path(base_dir) if base_dir is not None else None}
    try:
        return DeploymentConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(source, issues_from_validation(exc, DeploymentConfig, _node)) from None
