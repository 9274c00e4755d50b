"""What every section of the deployment config shares: the strict, frozen base model and the field types
(paths relative to the config file, ports, fractions)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

__all__ = ["ConfigModel", "ConfigPath", "Fraction", "Port"]

Port = Annotated[int, Field(ge=1, le=65535)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file's directory (like docker compose does)."""
    value = value.expanduser()
    base = (info.context or {}).get("base_dir") if info is not None else None
    if not value.is_absolute() and base is not None:
        value = Path(os.path.normpath(Path(base) / value))
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]


class ConfigModel(BaseModel):
    """A config section: unknown keys are errors, and a loaded config cannot be changed."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)
