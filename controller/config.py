"""The deployment config: one YAML file per deployment, validated on load.

`load_config(path)` returns a frozen `DeploymentConfig` or raises `ConfigError`, whose message lists
every problem as `key.path[index].name (line N): what is wrong; expected ...`. Unknown keys are errors
(with a did-you-mean hint). Relative paths in the file are resolved against the file's directory.

An inline Triton admin key is refused: the key must come from an environment variable
(`triton.admin_key_env`) or a file (`triton.admin_key_file`), so configs can be committed and shared.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from protocol import defaults
from sources import source_kind, source_kinds
from sources.folder import FolderSource
from sources.registry import on_source_kinds_changed
from sources.synthetic import DriftConfig, SyntheticSource
from trainer.configs import RetrainConfig, default_grid

__all__ = [
    "CAMERA_NAME_PATTERN",
    "CameraConfig",
    "ConfigError",
    "ConfigIssue",
    "CpuResources",
    "DataConfig",
    "DeploymentConfig",
    "DriftConfig",
    "EdgeModelConfig",
    "FolderSource",
    "GoldenModelConfig",
    "GpuResources",
    "InferenceConfig",
    "MetricsConfig",
    "MicroprofilerConfig",
    "RetrainingConfig",
    "SchedulerConfig",
    "SyntheticSource",
    "TritonEmbedded",
    "TritonExternal",
    "default_retraining_grid",
    "load_config",
    "parse_config",
]

# Triton model names become directory names and URL path segments: keep them to a safe subset.
CAMERA_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

# The torchvision families trainer/models.py builds (a test keeps these in step with it).
EdgeFamily = Literal["resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5"]
GoldenFamily = Literal["resnet34", "resnet50", "wide_resnet50_2", "resnext50_32x4d"]
RESERVED_CAMERA_NAMES = frozenset({"golden"})  # the golden model is served under this Triton name
Port = Annotated[int, Field(ge=1, le=65535)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]


# --------------------------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file: where (`path`, e.g. `cameras[2].source.seed`) and what."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "(top level)"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """A deployment config that cannot be used. `str(err)` is a readable multi-line report."""

    def __init__(self, source: str, issues: Sequence[ConfigIssue]) -> None:
        self.source = source
        self.issues = list(issues)
        count = len(self.issues)
        head = f"invalid deployment config {source}: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([head, *(f"  - {issue}" for issue in self.issues)]))

    @property
    def paths(self) -> list[str]:
        return [issue.path for issue in self.issues]


class _LocatedError(ValueError):
    """A cross-field error raised in a validator, pointing at a key path relative to the validated object."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def _unique(names: list[str], field: str, what: str) -> None:
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise _LocatedError(
                (index, "name"),
                f"duplicate {what} {name!r} (also at {field}[{seen[name]}]); names must be unique",
            )
        seen[name] = index


# ---------------------------------------------------------------------------------------------- paths
def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file's directory (like docker compose does)."""
    value = value.expanduser()
    base = (info.context or {}).get("base_dir") if info is not None else None
    if not value.is_absolute() and base is not None:
        value = Path(os.path.normpath(Path(base) / value))
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)


# -------------------------------------------------------------------------------------------- cameras
# A camera's `source:` is one of the kinds registered in sources/registry.py (importing `sources`
# registers the built-ins): the union is rebuilt whenever a kind is registered, so a new kind validates
# without a change here.
def _source_union() -> Any:
    models = tuple(kind.config_model for kind in source_kinds())
    return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007 (a runtime tuple of models)


Source = _source_union()


class CameraConfig(_Model):
    name: Annotated[str, Field(pattern=CAMERA_NAME_PATTERN)]
    source: Source

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_CAMERA_NAMES:
            raise PydanticCustomError(
                "reserved_name",
                "the name {name!r} is reserved (the golden model is served under it)",
                {"name": name},
            )
        return name


def _rebuild_source_union() -> None:
    global Source
    Source = _source_union()
    CameraConfig.model_fields["source"] = FieldInfo.from_annotation(Source)
    CameraConfig.model_rebuild(force=True)
    if "DeploymentConfig" in globals():  # defined below; rebuilt too, it embeds CameraConfig's schema
        DeploymentConfig.model_rebuild(force=True)


on_source_kinds_changed(_rebuild_source_union)


# --------------------------------------------------------------------------------------------- models
class EdgeModelConfig(_Model):
    """The per-camera model served live and retrained every window."""

    family: EdgeFamily = "resnet18"
    input_size: int = Field(defaults.EDGE_INPUT_SIZE, ge=16, le=512)
    hidden: Literal[64, 1024] = 64  # width of the two-layer classification head


class GoldenModelConfig(_Model):
    """The large, slow labelling model, run on a sample of each window's frames."""

    family: GoldenFamily = "resnet50"
    input_size: int = Field(224, ge=16, le=512)
    hidden: int = Field(1024, ge=1, le=8192)  # head width


# ------------------------------------------------------------------------------------------ resources
class CpuResources(_Model):
    """CPU-only mode: shares are fractions of `cores`."""

    mode: Literal["cpu"]
    cores: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=4096)


class GpuResources(_Model):
    """GPU mode: shares are fractions of one GPU; `count` GPUs are planned over."""

    mode: Literal["gpu"]
    count: int = Field(1, ge=1, le=64)
    devices: list[Annotated[int, Field(ge=0)]] | None = None  # CUDA indices; default 0..count-1
    memory_gb: float | None = Field(None, gt=0.0, le=4096.0)  # per GPU; default: what pynvml reports
    mps: bool = True  # run trainers as MPS clients with CUDA_MPS_ACTIVE_THREAD_PERCENTAGE
    mps_dir: ConfigPath | None = None  # private MPS pipe/log dirs; default <data.dir>/mps
    # training img/s per MPS share as bench/train_throughput.py writes it; default: linear in the share.
    # Read when the controller starts (it may name a path inside the controller's container).
    throughput_profile: ConfigPath | None = None
    # each trainer's device memory, at most (MPS clients only: CUDA_MPS_PINNED_DEVICE_MEM_LIMIT): a job that
    # needs more fails with out-of-memory in its own process, and can never take the memory Triton serves from
    trainer_memory_mb: int | None = Field(None, ge=256, le=4_194_304)

    @model_validator(mode="after")
    def _devices_match_count(self) -> GpuResources:
        if self.devices is not None:
            if len(self.devices) != self.count:
                raise _LocatedError(
                    ("devices",),
                    f"lists {len(self.devices)} device(s) but count is {self.count}; "
                    "expected exactly `count` device indices",
                )
            if len(set(self.devices)) != len(self.devices):
                raise _LocatedError(("devices",), f"device indices must be unique, got {self.devices}")
        if self.trainer_memory_mb is not None and not self.mps:
            raise _LocatedError(("trainer_memory_mb",), "is an MPS client limit: it needs `mps: true`")
        return self

    @property
    def device_indices(self) -> list[int]:
        return list(self.devices) if self.devices is not None else list(range(self.count))


Resources = Annotated[CpuResources | GpuResources, Field(discriminator="mode")]


# ------------------------------------------------------------------------------- scheduling, training
class SchedulerConfig(_Model):
    name: Literal["thief", "ekya", "fair", "uniform", "noretrain"] = "thief"
    fair_inference_weight: float = Field(0.5, gt=0.0, lt=1.0)  # fair: inference's part of the GPUs
    uniform_inference_fraction: float = Field(0.5, gt=0.0, lt=1.0)  # uniform: static inference split
    min_inference_accuracy: float = Field(0.0, ge=0.0, le=1.0)  # thief: never plan a camera below it
    # fair/uniform retrain every camera with one fixed config; default: the grid's middle entry
    retraining_config: str | None = None
    replan_on_completion: bool = True
    # thief/ekya: plan on accuracies forecast one window ahead from each camera's measured error growth
    # (controller/planner/drift.py) instead of the closed window's
    drift_forecast: bool = True


# The retraining configurations are the trainer's own type (one definition for the config file, the
# planner and the trainer): epochs, layers (head | last_block | all), subsample, batch_size, lr,
# momentum, hidden, history_weight. Its `name` (e.g. "e15-all-h1024-s0.5") identifies it.
RetrainingConfig = RetrainConfig


def default_retraining_grid() -> list[RetrainConfig]:
    """The 18 configurations equivalent to the original's (trainer.configs.default_grid)."""
    return default_grid()


class BootstrapConfig(_Model):
    """How the initial models are trained (`ekya bootstrap`, or the controller's first start)."""

    history_windows: int = Field(defaults.HISTORY_WINDOWS, ge=1, le=100)  # windows -k..-1 of every camera for the edge model
    edge_crops: int = Field(1600, ge=10)
    edge_epochs: int = Field(4, ge=1, le=1000)
    golden_crops: int = Field(2400, ge=10)
    golden_epochs: int = Field(4, ge=1, le=1000)


class MicroprofilerConfig(_Model):
    subsample: Fraction = 0.1  # fraction of the window's labelled data each candidate trains on
    epochs: int = Field(5, ge=1, le=100)
    budget_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # of the window's compute spent profiling
    prune_after_windows: int = Field(2, ge=0, le=1000)  # drop configs that kept losing; 0: never
    serve_trials: bool = True  # serve the best trial model at once where it beats the serving one (thief/ekya)
    # profile this many seconds before a window closes, on its data so far (thief/ekya; 0: at the close)
    ahead_seconds: float = Field(0.0, ge=0.0, le=3600.0)
    # also profile this often during a window, every camera whose job is done (0: only at ahead_seconds),
    # so that the window's later frames are served by a model trained on its earlier ones
    ahead_every_seconds: float = Field(0.0, ge=0.0, le=3600.0)


# --------------------------------------------------------------------------------------------- triton
_INLINE_KEY_MESSAGE = (
    "an inline admin key is not allowed (it would end up in version control and in logs); "
    "put the key in an environment variable and set `admin_key_env: VAR_NAME`, or in a file "
    "readable only by the controller and set `admin_key_file: /path/to/key`"
)


def _reject_inline_key(value: Any) -> None:
    if value is not None:
        raise PydanticCustomError("inline_secret", _INLINE_KEY_MESSAGE, {})


class _TritonCommon(_Model):
    # "auto": onnxruntime (native, GPU) for an external/containerised Triton, the project's Python-based
    # ekya_onnx backend for the embedded server; the repository writer follows `resolved_backend`.
    backend: Literal["auto", "onnxruntime", "ekya_onnx"] = "auto"
    model_repository: ConfigPath | None = None  # default <data.dir>/model_repository
    admin_call_timeout_s: float = Field(30.0, gt=0.0, le=3600.0)  # every load/unload call times out
    admin_key: Any = Field(None, repr=False, exclude=True)  # never accepted: see _INLINE_KEY_MESSAGE

    @field_validator("admin_key", mode="before")
    @classmethod
    def _no_inline_key(cls, value: Any) -> Any:
        _reject_inline_key(value)
        return value  # only None gets here


class TritonEmbedded(_TritonCommon):
    """A tritonserver process started and owned by the controller (ports: None = pick free ones)."""

    mode: Literal["embedded"]
    address: str = "127.0.0.1"
    grpc_port: Port | None = None
    http_port: Port | None = None
    metrics_port: Port | None = None

    @property
    def resolved_backend(self) -> str:
        return "ekya_onnx" if self.backend == "auto" else self.backend


class TritonExternal(_TritonCommon):
    """An already running Triton (e.g. NVIDIA's container) with a restricted model-repository API."""

    mode: Literal["external"]
    url: Annotated[str, Field(min_length=1)]  # gRPC endpoint, host:port
    http_url: str | None = None  # e.g. http://triton:8000, for the HTTP admin calls
    metrics_url: str | None = None  # e.g. http://triton:8002/metrics
    admin_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    admin_key_file: ConfigPath | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> TritonExternal:
        if self.admin_key_env is not None and self.admin_key_file is not None:
            raise _LocatedError(("admin_key_file",), "set admin_key_env or admin_key_file, not both")
        return self

    @property
    def resolved_backend(self) -> str:
        return "onnxruntime" if self.backend == "auto" else self.backend

    def read_admin_key(self) -> str | None:
        """The admin key from its env var or file; None if the Triton is unrestricted."""
        if self.admin_key_env is not None:
            key = os.environ.get(self.admin_key_env, "").strip()
            if not key:
                raise ConfigError(
                    "triton",
                    [
                        ConfigIssue(
                            "triton.admin_key_env",
                            f"environment variable {self.admin_key_env} is unset or empty",
                        )
                    ],
                )
            return key
        if self.admin_key_file is not None:
            try:
                key = self.admin_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    "triton",
                    [
                        ConfigIssue(
                            "triton.admin_key_file", f"cannot read {self.admin_key_file}: {exc.strerror}"
                        )
                    ],
                ) from None
            if not key:
                raise ConfigError(
                    "triton", [ConfigIssue("triton.admin_key_file", f"{self.admin_key_file} is empty")]
                )
            return key
        return None


Triton = Annotated[TritonEmbedded | TritonExternal, Field(discriminator="mode")]


# ------------------------------------------------------------------------------------------ the rest
class DataConfig(_Model):
    dir: ConfigPath = Field(defaults.DATA_DIR, validate_default=True)  # relative: to the config file
    disk_budget_mb: int = Field(defaults.DISK_BUDGET_MB, ge=16)  # spooled frames; oldest dropped first
    holdout_fraction: float = Field(0.25, gt=0.0, lt=1.0)  # of each window's labels, kept for testing


class MetricsConfig(_Model):
    enabled: bool = True
    port: int = Field(9400, ge=0, le=65535)  # 0: any free port
    address: str = "127.0.0.1"


class InferenceConfig(_Model):
    max_batch_size: int = Field(32, ge=1, le=4096)
    max_instances: int = Field(4, ge=1, le=64)  # per camera model
    max_queue_delay_us: int = Field(0, ge=0, le=10_000_000)  # Triton dynamic batching delay
    request_timeout_s: float = Field(defaults.REQUEST_TIMEOUT_S, gt=0.0, le=600.0)
    full_share: Fraction = 0.25  # the share at which inference keeps up with every frame
    # the controller's labelling and measuring requests in flight at once (golden model, held-out data)
    label_requests_in_flight: int = Field(1, ge=1, le=16)


class DeploymentConfig(_Model):
    cameras: list[CameraConfig] = Field(min_length=1, max_length=1024)
    edge_model: EdgeModelConfig = EdgeModelConfig()
    golden_model: GoldenModelConfig = GoldenModelConfig()
    window_seconds: float = Field(defaults.WINDOW_SECONDS, ge=1.0, le=86_400.0)
    resources: Resources = Field(default_factory=lambda: CpuResources(mode="cpu"))
    delta: float = Field(0.1, gt=0.0, le=1.0)  # thief's steal step, in GPUs (or CPU pools)
    scheduler: SchedulerConfig = SchedulerConfig()
    retraining_configs: list[RetrainConfig] = Field(default_factory=default_grid, min_length=1)
    microprofiler: MicroprofilerConfig = MicroprofilerConfig()
    triton: Triton = Field(default_factory=lambda: TritonEmbedded(mode="embedded"))
    data: DataConfig = Field(default_factory=dict, validate_default=True)  # type: ignore[arg-type]
    metrics: MetricsConfig = MetricsConfig()
    label_sampling_rate: Fraction = defaults.LABEL_SAMPLING_RATE
    inference: InferenceConfig = InferenceConfig()
    bootstrap: BootstrapConfig = BootstrapConfig()

    @field_validator("retraining_configs", mode="before")
    @classmethod
    def _expand_default_grid(cls, value: Any) -> Any:
        if value == "default":
            return default_grid()
        if isinstance(value, str):
            raise PydanticCustomError(
                "grid",
                "expected the string 'default' or a list of retraining configs, got {value!r}",
                {"value": value},
            )
        return value

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        _unique([c.name for c in cameras], "cameras", "camera name")
        return cameras

    @field_validator("retraining_configs")
    @classmethod
    def _unique_configs(cls, configs: list[RetrainConfig]) -> list[RetrainConfig]:
        _unique([c.name for c in configs], "retraining_configs", "retraining config")
        return configs

    @model_validator(mode="after")
    def _cross_checks(self) -> DeploymentConfig:
        wanted = self.scheduler.retraining_config
        if wanted is not None and wanted not in {c.name for c in self.retraining_configs}:
            raise _LocatedError(
                ("scheduler", "retraining_config"),
                f"no retraining config named {wanted!r}; expected one of: "
                + ", ".join(c.name for c in self.retraining_configs),
            )
        for index, camera in enumerate(self.cameras):
            kind = source_kind(camera.source.kind)
            if kind.max_crop_size is not None and self.edge_model.input_size > kind.max_crop_size:
                raise _LocatedError(
                    ("edge_model", "input_size"),
                    f"{kind.name} cameras (cameras[{index}]) generate crops of at most {kind.max_crop_size} px; "
                    f"expected input_size <= {kind.max_crop_size}",
                )
        return self

    # ------------------------------------------------------------------ conveniences for the controller
    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def camera(self, name: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"no camera named {name!r}; cameras: {', '.join(self.camera_names)}")

    @property
    def fixed_retraining_config(self) -> RetrainConfig:
        """The one config fair/uniform use: `scheduler.retraining_config`, else the grid's middle one."""
        by_name = {c.name: c for c in self.retraining_configs}
        if self.scheduler.retraining_config is not None:
            return by_name[self.scheduler.retraining_config]
        return self.retraining_configs[len(self.retraining_configs) // 2]

    @property
    def model_repository(self) -> Path:
        return self.triton.model_repository or self.data.dir / "model_repository"

    @property
    def mps_dir(self) -> Path | None:
        if not isinstance(self.resources, GpuResources) or not self.resources.mps:
            return None
        return self.resources.mps_dir or self.data.dir / "mps"


# ---------------------------------------------------------------------------------------------- loading
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
        raise ConfigError(
            source, [ConfigIssue("", f"expected a mapping of keys at the top level, got {_kind(data)}")]
        )
    context = {"base_dir": Path(base_dir) if base_dir is not None else None}
    try:
        return DeploymentConfig.model_validate(data, context=context)
    except ValidationError as exc:
        issues = [_issue_from_pydantic(err, _node) for err in exc.errors(include_url=False)]
        raise ConfigError(source, _dedupe(issues)) from None


# ------------------------------------------------------------------------------ turning errors readable
_SECRET_KEYS = {"admin_key"}


def _issue_from_pydantic(err: Mapping[str, Any], node: yaml.Node | None) -> ConfigIssue:
    raw_loc: tuple[str | int, ...] = tuple(err.get("loc", ()))
    loc, model = _clean_loc(raw_loc)
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    located = ctx.get("error")
    if isinstance(located, _LocatedError):  # a cross-field check that knows the exact key
        full = loc + located.loc
        return ConfigIssue(_format_loc(full), located.message, _line_of(node, full))
    if kind == "missing":
        message = "required key is missing"
    elif kind == "extra_forbidden":
        message = _unknown_key_message(str(loc[-1]) if loc else "", model)
    elif kind == "union_tag_invalid":
        message = f"unknown {ctx.get('discriminator', 'kind')} {ctx.get('tag')!r}; expected one of: {ctx.get('expected_tags')}"
    elif kind == "union_tag_not_found":
        message = f"missing {ctx.get('discriminator', 'kind')}; expected one of its values"
    elif kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
        message = (
            "expected a name of 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit "
            f"(it becomes a Triton model name); got {err.get('input')!r}"
        )
    else:
        message = _expectation(err)
        if (
            loc
            and loc[-1] not in _SECRET_KEYS
            and "input" in err
            and not isinstance(err["input"], (Mapping, list))
        ):
            message += f"; got {_short(err['input'])}"
    return ConfigIssue(_format_loc(loc), message, _line_of(node, loc))


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_TYPES = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "dict_type": "a mapping",
}


def _expectation(err: Mapping[str, Any]) -> str:
    """Pydantic's message, phrased as what is expected."""
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        return f"expected a number {_BOUNDS[kind]} {bound}"
    if kind in _TYPES:
        return f"expected {_TYPES[kind]}"
    if kind == "too_short" and ctx.get("min_length") is not None:
        return f"expected at least {ctx['min_length']} item(s)"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    for prefix in ("Input should be ", "input should be "):
        if msg.startswith(prefix):
            return "expected " + msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


_SYNONYMS = {
    "learning_rate": "lr",
    "batch": "batch_size",
    "layers_trained": "layers",
    "password": "admin_key_file",
}


def _unknown_key_message(key: str, model: type[BaseModel] | None) -> str:
    if model is None:
        return "unknown key"
    allowed = [name for name, field in model.model_fields.items() if not field.exclude]
    close = (
        [_SYNONYMS[key]] if _SYNONYMS.get(key) in allowed else difflib.get_close_matches(key, allowed, n=1)
    )
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; expected one of: {', '.join(allowed)}"


def _dedupe(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    seen: set[tuple[str, str]] = set()
    out = []
    for issue in issues:
        if (issue.path, issue.message) not in seen:
            seen.add((issue.path, issue.message))
            out.append(issue)
    return out


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _clean_loc(loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], type[BaseModel] | None]:
    """Drop pydantic's union-tag / validator entries from an error location, following the model tree.

    Returns the user-facing key path and the model class that owns the last key (for unknown-key hints).
    """
    out: list[str | int] = []
    current: Any = DeploymentConfig
    owner: type[BaseModel] | None = DeploymentConfig
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        i += 1
        if isinstance(part, int):
            out.append(part)
            current = _list_item(current)
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            owner = current
            field = current.model_fields.get(part)
            out.append(part)
            if field is None:
                current = None
                continue
            current = field.annotation
            variants = _union_models(current)
            if variants and i < len(parts) and isinstance(parts[i], str):
                tagged = _pick_variant(variants, str(parts[i]))
                if tagged is not None:
                    i += 1
                    current = tagged
            elif len(variants) == 1:
                current = variants[0]
            continue
        # a type label pydantic inserted (e.g. 'function-after[...]'): skip it; keep real keys
        if "[" in part or "(" in part:
            continue
        out.append(part)
        current = None
    return tuple(out), owner


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_models(tp: Any) -> list[type[BaseModel]]:
    tp = _strip_annotated(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp) if origin in (Union, types.UnionType) else (tp,)
    out = []
    for arg in args:
        arg = _strip_annotated(arg)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            out.append(arg)
    return out


def _list_item(tp: Any) -> Any:
    tp = _strip_annotated(tp)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            if typing.get_origin(_strip_annotated(arg)) is list:
                tp = _strip_annotated(arg)
                break
    if typing.get_origin(tp) is list:
        item = _strip_annotated(typing.get_args(tp)[0])
        models = _union_models(item)
        return models[0] if len(models) == 1 else item
    return None


def _pick_variant(variants: list[type[BaseModel]], tag: str) -> type[BaseModel] | None:
    for variant in variants:
        for field_name in ("kind", "mode"):
            field = variant.model_fields.get(field_name)
            if field is not None and tag in typing.get_args(field.annotation):
                return variant
    return None


def _line_of(node: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """1-based line of the deepest existing node on `loc` in the composed YAML tree."""
    if node is None:
        return None
    line = None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                if getattr(key_node, "value", None) == part:
                    line = key_node.start_mark.line + 1
                    child = value_node
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
