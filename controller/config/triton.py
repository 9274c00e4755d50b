"""The Triton server the controller serves through: one it starts (embedded), or one already running
(external). An inline admin key is refused: the key must come from an environment variable
(`admin_key_env`) or a file (`admin_key_file`), so configs can be committed and shared."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import ConfigError, ConfigIssue, LocatedError
from .fields import ConfigModel, ConfigPath, Port

__all__ = ["Triton", "TritonEmbedded", "TritonExternal"]


_INLINE_KEY_MESSAGE = (
    "an inline admin key is not allowed (it would end up in version control and in logs); "
    "put the key in an environment variable and set `admin_key_env: VAR_NAME`, or in a file "
    "readable only by the controller and set `admin_key_file: /path/to/key`"
)


def _reject_inline_key(value: Any) -> None:
    if value is not None:
        raise PydanticCustomError("inline_secret", _INLINE_KEY_MESSAGE, {})


class _TritonCommon(ConfigModel):
    # "auto": onnxruntime (native, GPU) for an external/containerised Triton, the project's Python-based
    # ekya_onnx backend for the embedded server; the repository writer follows `resolved_backend`.
    backend: Literal["auto", "onnxruntime", "ekya_onnx"] = "auto"
    model_repository: ConfigPath | None = None  # default <data.dir>/model_repository
    admin_call_timeout_s: float = Field(30.0, gt=0.0, le=3600.0)  # every load/unload call times out
    # data.capture_dir as the Triton server sees it (a Triton in another container mounts it elsewhere);
    # default: the same path. Not resolved against the config file: it is a path on Triton's side.
    capture_dir: Annotated[str, Field(min_length=1)] | None = None
    # How a camera model captures its samples: "backend", ekya_onnx does it itself; "wrapper", the camera's
    # name is a Python (BLS) model that captures in front of "<camera>.onnx" (the only way with NVIDIA's
    # native onnxruntime backend); "auto": the wrapper for onnxruntime, the backend for ekya_onnx.
    capture_via: Literal["auto", "backend", "wrapper"] = "auto"
    admin_key: Any = Field(None, repr=False, exclude=True)  # never accepted: see _INLINE_KEY_MESSAGE

    @field_validator("admin_key", mode="before")
    @classmethod
    def _no_inline_key(cls, value: Any) -> Any:
        _reject_inline_key(value)
        return value  # only None gets here

    @model_validator(mode="after")
    def _capture_possible(self) -> _TritonCommon:
        if self.capture_via == "backend" and self.resolved_backend == "onnxruntime":  # type: ignore[attr-defined]
            raise LocatedError(("capture_via",), "the onnxruntime backend cannot capture samples itself; use "
                                                 "`wrapper` (or `auto`)")
        return self


class TritonEmbedded(_TritonCommon):
    """A tritonserver process started and owned by the controller, on these ports (Triton's standard
    ones by default): fixed, so a restarted server, or controller, is found where the cameras look."""

    mode: Literal["embedded"]
    address: str = "127.0.0.1"
    grpc_port: Port = 8001
    http_port: Port = 8000
    metrics_port: Port = 8002

    @model_validator(mode="after")
    def _distinct_ports(self) -> TritonEmbedded:
        if len({self.grpc_port, self.http_port, self.metrics_port}) < 3:
            raise LocatedError(("metrics_port",), "grpc_port, http_port and metrics_port must differ")
        return self

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
            raise LocatedError(("admin_key_file",), "set admin_key_env or admin_key_file, not both")
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

