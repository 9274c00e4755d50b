"""The deployment config's schema: one frozen `DeploymentConfig` per deployment, its sections and the
checks across them. Loading a file and reporting its problems: controller/config/loading.py and errors.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from protocol import defaults
from sources.registry import on_source_kinds_changed
from trainer.configs import RetrainConfig, default_grid
from trainer.streams.base import CLASSES

from .cameras import CameraConfig
from .errors import LocatedError
from .fields import ConfigModel, ConfigPath, Fraction
from .resources import CpuResources, GpuResources, Resources
from .sources import check_crop_size
from .triton import Triton, TritonEmbedded

__all__ = [
    "BootstrapConfig",
    "DataConfig",
    "DeploymentConfig",
    "DirectivesConfig",
    "EdgeModelConfig",
    "GoldenModelConfig",
    "InferenceConfig",
    "MetricsConfig",
    "MicroprofilerConfig",
    "NetworkConfig",
    "RetrainingConfig",
    "RollbackConfig",
    "SchedulerConfig",
    "default_retraining_grid",
]

# The torchvision families trainer/models.py builds (a test keeps these in step with it).
EdgeFamily = Literal["resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5"]
GoldenFamily = Literal["resnet34", "resnet50", "wide_resnet50_2", "resnext50_32x4d"]


def _unique(names: list[str], field: str, what: str, key: tuple[str, ...] = ("name",)) -> None:
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise LocatedError(
                (index, *key),
                f"duplicate {what} {name!r} (also at {field}[{seen[name]}]); names must be unique",
            )
        seen[name] = index


# --------------------------------------------------------------------------------------------- models
class EdgeModelConfig(ConfigModel):
    """The per-camera model served live and retrained every window: bootstrapped (trained from the cameras'
    labelled history), or the user's own as the initial model of every camera, from `weights` (a state
    dict of `family` with its head, trainer/user_models.py) or an `onnx` file (float32 [batch, 3, S, S]
    pixels in [0, 1] -> [batch, classes] logits; converted to torch for retraining). Files are checked
    at start-up (controller/user_models.py), not here: a camera client reads this config without them."""

    family: EdgeFamily = "resnet18"
    input_size: int = Field(defaults.EDGE_INPUT_SIZE, ge=16, le=512)
    hidden: Literal[64, 1024] = 64  # width of the two-layer classification head
    weights: ConfigPath | None = None
    onnx: ConfigPath | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EdgeModelConfig:
        if self.weights is not None and self.onnx is not None:
            raise LocatedError(("onnx",), "give the initial edge model as `weights` or as `onnx`, not both")
        if self.onnx is not None and "family" in self.model_fields_set:
            raise LocatedError(("family",), "an onnx edge model brings its own architecture; drop `family`")
        return self

    @property
    def from_file(self) -> Path | None:
        return self.weights or self.onnx


Triple = tuple[float, float, float]
_GOLDEN_FILE_KEYS = ("mean", "std", "input_layout", "classes", "class_map")


class GoldenModelConfig(ConfigModel):
    """The large, slow labelling model, run on a sample of each window's frames: bootstrapped (`family`,
    `hidden`), or the user's own `onnx` file, served by Triton as it is. The controller sends it crops
    resized to `input_size`, as float32 pixels in [0, 1] normalised by (x - mean) / std per channel, in
    `input_layout`; its output's classes are `classes`, mapped to the deployment's by `class_map` (many
    to one; a class it leaves out labels nothing: the crop is not trained on). Default map: the classes
    the deployment also has, by name."""

    family: GoldenFamily = "resnet50"
    input_size: int = Field(224, ge=16, le=512)
    hidden: int = Field(1024, ge=1, le=8192)  # head width
    onnx: ConfigPath | None = None
    mean: Triple = (0.485, 0.456, 0.406)  # ImageNet's, as torchvision's models expect
    std: Triple = (0.229, 0.224, 0.225)
    input_layout: Literal["nchw", "nhwc"] = "nchw"
    classes: list[str] | None = Field(None, min_length=2, max_length=100_000)
    class_map: dict[str, str] | None = None

    @field_validator("std")
    @classmethod
    def _positive_std(cls, std: Triple) -> Triple:
        if min(std) <= 0:
            raise PydanticCustomError("std", "every std must be > 0, got {std}", {"std": list(std)})
        return std

    @model_validator(mode="after")
    def _file_keys(self) -> GoldenModelConfig:
        if self.onnx is None:
            extra = [key for key in _GOLDEN_FILE_KEYS if key in self.model_fields_set]
            if extra:
                raise LocatedError((extra[0],), "applies to a golden model given as a file: set `onnx` too")
            return self
        for key in ("family", "hidden"):
            if key in self.model_fields_set:
                raise LocatedError((key,), "a golden model from an onnx file is served as it is; drop it")
        if self.classes is None:
            raise LocatedError(("classes",), "list the onnx golden model's output classes, in output order")
        for index, name in enumerate(self.classes):
            if not name.strip() or name in self.classes[:index]:
                raise LocatedError(("classes", index), f"class names must be unique and not empty, got {name!r}")
        if self.class_map is not None:
            for name in self.class_map:
                if name not in self.classes:
                    raise LocatedError(("class_map", name), f"{name!r} is not one of golden_model.classes")
        return self

    def deployment_map(self, deployment: list[str]) -> list[int]:
        """For each of the golden model's classes, the deployment class index it labels (-1: none)."""
        assert self.classes is not None
        mapping = self.class_map if self.class_map is not None else {c: c for c in self.classes if c in deployment}
        return [deployment.index(mapping[c]) if c in mapping else -1 for c in self.classes]


# ------------------------------------------------------------------------------- scheduling, training
class SchedulerConfig(ConfigModel):
    name: str = "thief"  # one of the registered schedulers (controller/planner/schedulers.py)
    fair_inference_weight: float = Field(0.5, gt=0.0, lt=1.0)  # fair: inference's part of the GPUs
    uniform_inference_fraction: float = Field(0.5, gt=0.0, lt=1.0)  # uniform: static inference split
    min_inference_accuracy: float = Field(0.0, ge=0.0, le=1.0)  # thief: never plan a camera below it
    # fair/uniform retrain every camera with one fixed config; default: the grid's middle entry
    retraining_config: str | None = None
    replan_on_completion: bool = True
    # thief/ekya: plan on accuracies forecast one window ahead from each camera's measured error growth
    # (controller/planner/drift.py) instead of the closed window's
    drift_forecast: bool = True

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        # imported here: the registry pulls in every scheduler's implementation, which a config reader
        # (e.g. a camera client) otherwise never needs
        from controller.planner.schedulers import scheduler_names

        names = scheduler_names()
        if name not in names:
            raise PydanticCustomError(
                "unknown_scheduler",
                "expected one of the registered schedulers: {names}",
                {"names": ", ".join(names)},
            )
        return name


# The retraining configurations are the trainer's own type (one definition for the config file, the
# planner and the trainer): epochs, layers (head | last_block | all), subsample, batch_size, lr,
# momentum, hidden, history_weight. Its `name` (e.g. "e15-all-h1024-s0.5") identifies it.
RetrainingConfig = RetrainConfig


def default_retraining_grid() -> list[RetrainConfig]:
    """The 18 configurations equivalent to the original's (trainer.configs.default_grid)."""
    return default_grid()


class BootstrapConfig(ConfigModel):
    """How the initial models are trained (`ekya bootstrap`, or the controller's first start)."""

    history_windows: int = Field(defaults.HISTORY_WINDOWS, ge=1, le=100)  # windows -k..-1 of every camera for the edge model
    edge_crops: int = Field(1600, ge=10)
    edge_epochs: int = Field(4, ge=1, le=1000)
    golden_crops: int = Field(2400, ge=10)
    golden_epochs: int = Field(4, ge=1, le=1000)


class MicroprofilerConfig(ConfigModel):
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




# ------------------------------------------------------------------------------------------ the rest
class DataConfig(ConfigModel):
    dir: ConfigPath = Field(defaults.DATA_DIR, validate_default=True)  # relative: to the config file
    # the whole data directory (the model repository too when it is inside it), kept by retention per
    # kind (controller/retention/); each camera's spool is also held to its part of it by the camera
    disk_budget_mb: int = Field(defaults.DISK_BUDGET_MB, ge=16)
    holdout_fraction: float = Field(0.25, gt=0.0, lt=1.0)  # of each window's labels, kept for testing
    # retention: published versions kept per model (repository and checkpoints; >= 2 so a rollback has
    # somewhere to go), closed windows' labelled data and ended jobs' records kept, window records kept
    # in the state file (older ones go to windows.jsonl), and the size at which a log is rotated
    keep_versions: int = Field(3, ge=2, le=100)
    keep_windows: int = Field(2, ge=1, le=1000)
    keep_window_records: int = Field(100, ge=4, le=100_000)
    max_log_mb: int = Field(64, ge=1, le=100_000)
    # where the camera models write the samples they capture (default <dir>/capture), until the controller
    # moves them into its spool; as Triton sees it: triton.capture_dir
    capture_dir: ConfigPath | None = None


class RollbackConfig(ConfigModel):
    """Automatic rollback: at each window close, a model published since the last close is measured on
    the window's golden-labelled held-out data beside the model it replaced; if it is worse by more than
    `margin`, the replaced model's checkpoint is published again (as a new version)."""

    auto: bool = True
    margin: float = Field(0.05, ge=0.0, le=1.0)  # accuracy points (a few hundred held-out crops: mostly noise below)


class MetricsConfig(ConfigModel):
    enabled: bool = True
    port: int = Field(9400, ge=0, le=65535)  # 0: any free port
    address: str = "127.0.0.1"


class DirectivesConfig(ConfigModel):
    """The read-only HTTP endpoint from which cameras read their directive (protocol/directives.py)."""

    enabled: bool = True
    port: int = Field(9401, ge=0, le=65535)  # 0: any free port
    address: str = "127.0.0.1"  # loopback; e.g. 0.0.0.0 lets cameras on other hosts read it


class InferenceConfig(ConfigModel):
    max_batch_size: int = Field(32, ge=1, le=4096)
    max_instances: int = Field(4, ge=1, le=64)  # per camera model
    max_queue_delay_us: int = Field(0, ge=0, le=10_000_000)  # Triton dynamic batching delay
    request_timeout_s: float = Field(defaults.REQUEST_TIMEOUT_S, gt=0.0, le=600.0)
    full_share: Fraction = 0.25  # the share at which inference keeps up with every frame
    # the controller's labelling and measuring requests in flight at once (golden model, held-out data)
    label_requests_in_flight: int = Field(1, ge=1, le=16)
    # Each camera model's bounded queue (Triton's queue policy, timeout_action REJECT): a request that
    # waited queue_timeout_ms is shed, and one that finds max_queue_size requests waiting is refused.
    # Triton counts only the first kind (nv_inference_request_failure{reason="REJECTED"}), so the queue
    # is sized for the timeout to shed first; the size is the memory cap behind it. The timeout is well
    # above what a client that follows its stride waits on a busy box (an instance held up by training
    # and labelling on shared cores for half a second sheds nothing), below its request timeout.
    max_queue_size: int = Field(256, ge=1, le=100_000)
    queue_timeout_ms: int = Field(2000, ge=1, le=600_000)


class NetworkConfig(ConfigModel):
    """What other hosts can reach. Default: nothing, every endpoint on loopback. `expose: true` binds the
    embedded Triton's inference ports (gRPC, HTTP) and the read-only directive endpoint to all interfaces;
    the model-control API keeps its admin key either way, Triton's metrics port stays on
    `triton.address` and the controller's /metrics follows `metrics.address`."""

    expose: bool = False


ALL_INTERFACES = "0.0.0.0"


class DeploymentConfig(ConfigModel):
    cameras: list[CameraConfig] = Field(min_length=1, max_length=1024)
    # the object classes every camera model tells apart, in label order (a model's output i is classes[i])
    classes: list[str] = Field(default_factory=lambda: list(CLASSES), min_length=2, max_length=100_000)
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
    directives: DirectivesConfig = DirectivesConfig()
    network: NetworkConfig = NetworkConfig()
    label_sampling_rate: Fraction = defaults.LABEL_SAMPLING_RATE
    inference: InferenceConfig = InferenceConfig()
    bootstrap: BootstrapConfig = BootstrapConfig()
    rollback: RollbackConfig = RollbackConfig()

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

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, classes: list[str]) -> list[str]:
        for index, name in enumerate(classes):
            if not name.strip():
                raise LocatedError((index,), "a class name must not be empty")
        _unique(classes, "classes", "class", key=())
        return classes

    @field_validator("retraining_configs")
    @classmethod
    def _unique_configs(cls, configs: list[RetrainConfig]) -> list[RetrainConfig]:
        _unique([c.name for c in configs], "retraining_configs", "retraining config")
        return configs

    @model_validator(mode="after")
    def _cross_checks(self) -> DeploymentConfig:
        wanted = self.scheduler.retraining_config
        if wanted is not None and wanted not in {c.name for c in self.retraining_configs}:
            raise LocatedError(
                ("scheduler", "retraining_config"),
                f"no retraining config named {wanted!r}; expected one of: "
                + ", ".join(c.name for c in self.retraining_configs),
            )
        check_crop_size(self.cameras, self.edge_model.input_size)
        if list(self.classes) != list(CLASSES):
            for index, camera in enumerate(self.cameras):
                if camera.source.kind == "synthetic":  # its generator draws the original six
                    raise LocatedError(("classes",), f"synthetic cameras (cameras[{index}]) draw the original six "
                                       f"classes ({', '.join(CLASSES)}); keep the default class list with them")
        golden = self.golden_model
        if golden.class_map is not None:
            for name, target in golden.class_map.items():
                if target not in self.classes:
                    raise LocatedError(("golden_model", "class_map", name),
                                       f"{target!r} is not a deployment class; expected one of: {', '.join(self.classes)}")
        if golden.onnx is not None and all(i < 0 for i in golden.deployment_map(self.classes)):
            raise LocatedError(("golden_model", "class_map"),
                               "maps none of the golden model's classes to a deployment class: it would label nothing")
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
    def scheduler_settings(self) -> dict[str, Any]:
        """The `scheduler:` keys with `retraining_config` resolved (fixed_retraining_config), for
        `Scheduler.parameters_from`."""
        return {**self.scheduler.model_dump(), "retraining_config": self.fixed_retraining_config.name}

    @property
    def directives_bind_address(self) -> str:
        return ALL_INTERFACES if self.network.expose else self.directives.address

    @property
    def triton_bind_address(self) -> str | None:
        """Where the embedded Triton's gRPC and HTTP ports listen (None: an external Triton)."""
        if not isinstance(self.triton, TritonEmbedded):
            return None
        return ALL_INTERFACES if self.network.expose else self.triton.address

    @property
    def triton_metrics_url(self) -> str | None:
        """Triton's Prometheus endpoint: the embedded server's metrics port, or `triton.metrics_url`."""
        if isinstance(self.triton, TritonEmbedded):
            return f"http://{self.triton.address}:{self.triton.metrics_port}/metrics"
        return self.triton.metrics_url

    @property
    def model_repository(self) -> Path:
        return self.triton.model_repository or self.data.dir / "model_repository"

    @property
    def capture_dir(self) -> Path:
        """Where the camera models' captured samples land, as the controller sees it."""
        return self.data.capture_dir or self.data.dir / "capture"

    @property
    def capture_dir_for_triton(self) -> str:
        """The same directory as the Triton server sees it (another container may mount it elsewhere)."""
        return self.triton.capture_dir or str(self.capture_dir)

    @property
    def capture_budget_bytes(self) -> int:
        """A camera's capture directory's budget: a quarter of its part of the data directory's (captured
        samples wait there only until the controller's next pass)."""
        return int(self.data.disk_budget_mb * 2**20 / max(1, len(self.cameras)) / 4)

    def sampling_rate(self, camera: str) -> float:
        """The fraction of the camera's requests captured for labelling."""
        override = self.camera(camera).label_sampling_rate
        return self.label_sampling_rate if override is None else override

    @property
    def mps_dir(self) -> Path | None:
        if not isinstance(self.resources, GpuResources) or not self.resources.mps:
            return None
        return self.resources.mps_dir or self.data.dir / "mps"



on_source_kinds_changed(lambda: DeploymentConfig.model_rebuild(force=True))  # it embeds CameraConfig
