"""Building blocks of a source kind's config section, validated like the rest of the deployment config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo


class SourceConfig(BaseModel):
    """Base of every `source:` model: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file's directory (validation context `base_dir`)."""
    value = value.expanduser()
    base = (info.context or {}).get("base_dir") if info is not None else None
    if not value.is_absolute() and base is not None:
        value = Path(os.path.normpath(Path(base) / value))
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
