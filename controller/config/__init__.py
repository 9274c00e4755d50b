"""The deployment config: one YAML file per deployment, validated on load.

`load_config(path)` returns a frozen `DeploymentConfig` or raises `ConfigError`, whose message lists
every problem as `key.path[index].name (line N): what is wrong; expected ...`. Unknown keys are errors
(with a did-you-mean hint). Relative paths in the file are resolved against the file's directory.

Modules: `schema` (DeploymentConfig and its sections), `cameras`, `sources` (a camera's frame source),
`resources`, `triton`, `fields` (shared field types), `errors` (readable problems), `loading` (YAML in).
"""

from .cameras import CAMERA_NAME_PATTERN, CameraConfig
from .errors import ConfigError, ConfigIssue
from .loading import load_config, parse_config
from .resources import CpuResources, GpuResources
from .schema import (
    BootstrapConfig,
    DataConfig,
    DeploymentConfig,
    DirectivesConfig,
    EdgeModelConfig,
    GoldenModelConfig,
    InferenceConfig,
    MetricsConfig,
    MicroprofilerConfig,
    NetworkConfig,
    RetrainingConfig,
    RollbackConfig,
    SchedulerConfig,
    default_retraining_grid,
)
from .sources import DriftConfig, FolderSource, Source, SyntheticSource
from .triton import TritonEmbedded, TritonExternal

__all__ = [
    "CAMERA_NAME_PATTERN",
    "BootstrapConfig",
    "CameraConfig",
    "ConfigError",
    "ConfigIssue",
    "CpuResources",
    "DataConfig",
    "DeploymentConfig",
    "DirectivesConfig",
    "DriftConfig",
    "EdgeModelConfig",
    "FolderSource",
    "GoldenModelConfig",
    "GpuResources",
    "InferenceConfig",
    "MetricsConfig",
    "MicroprofilerConfig",
    "NetworkConfig",
    "RetrainingConfig",
    "RollbackConfig",
    "SchedulerConfig",
    "Source",
    "SyntheticSource",
    "TritonEmbedded",
    "TritonExternal",
    "default_retraining_grid",
    "load_config",
    "parse_config",
]
