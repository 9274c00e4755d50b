"""What every section of the deployment config shares: the strict, frozen base model and the field types
(paths relative to the config file, ports, fractions)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from sources.fields import ConfigPath  # relative paths: to the config file's directory (a source's too)

__all__ = ["ConfigModel", "ConfigPath", "Fraction", "Port"]

Port = Annotated[int, Field(ge=1, le=65535)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]


class ConfigModel(BaseModel):
    """A config section: unknown keys are errors, and a loaded config cannot be changed."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)
