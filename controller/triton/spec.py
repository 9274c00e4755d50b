"""Typed model spec for one served model, and its rendering to Triton's config.pbtxt."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Triton model names become directory names and URL path parts: keep them boring.
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
RESERVED_NAMES = frozenset({"golden"})
# A camera whose model is wrapped for capture (capture_via "wrapper") serves its ONNX versions under
# "<camera>.onnx"; no model of ours may be named so.
INNER_SUFFIX = ".onnx"

# Backends: our Python-based onnxruntime backend for the embedded server; NVIDIA's native one in the
# Triton container. The model directory layout is the same for both.
Backend = Literal["ekya_onnx", "onnxruntime"]
InstanceKind = Literal["KIND_CPU", "KIND_GPU"]


class InvalidModelNameError(ValueError):
    pass


def check_model_name(name: str, *, allow_reserved: bool = False) -> str:
    if not isinstance(name, str) or not MODEL_NAME_RE.match(name) or name in (".", ".."):
        raise InvalidModelNameError(
            f"invalid camera/model name {name!r}: use 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if not allow_reserved and name in RESERVED_NAMES:
        raise InvalidModelNameError(f"the name {name!r} is reserved for the golden model")
    if name.endswith(INNER_SUFFIX):
        raise InvalidModelNameError(f"invalid camera/model name {name!r}: names ending in {INNER_SUFFIX!r} are "
                                    "reserved for the ONNX models behind capturing cameras")
    return name


def inner_model_name(name: str) -> str:
    """The Triton model that runs a wrapped camera model's ONNX versions."""
    return name + INNER_SUFFIX


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    input_name: str = "input"
    input_dims: tuple[int, ...] = (3, 64, 64)  # without the batch dimension (with it: max_batch_size 0)
    output_name: str = "logits"
    output_dims: tuple[int, ...] = (6,)
    # 0: the model does its own batching (a detector exported for one frame): dims are full shapes, -1 for
    # a dimension the model leaves free, and Triton does not batch
    max_batch_size: int = Field(64, ge=0)
    dynamic_batching: bool = True
    max_queue_delay_us: int = Field(500, ge=0)
    # Shedding (dynamic batching only): at most this many requests wait in the model's queue, and one
    # that waited longer than queue_timeout_us is rejected, so a flooding client gets errors back
    # instead of an unbounded queue that delays every other request. 0 = unbounded / no timeout.
    max_queue_size: int = Field(0, ge=0)
    queue_timeout_us: int = Field(0, ge=0)
    instance_count: int = Field(1, ge=1, le=64)
    instance_kind: InstanceKind = "KIND_CPU"
    gpus: tuple[int, ...] = ()  # pin KIND_GPU instances to these devices
    versions_served: int = Field(1, ge=1)  # newest N versions loaded; 1 = clean swap to the newest
    backend: Backend = "ekya_onnx"
    intra_op_threads: int = Field(1, ge=1)
    # ekya_onnx: "onnxruntime", "torch" (the ONNX graph run by torch, on the instance's GPU if any) or
    # "auto" (torch for GPU instances where onnxruntime has no CUDA provider, else onnxruntime)
    runtime: Literal["auto", "onnxruntime", "torch"] = "auto"
    # Server-side sample capture (protocol/capture.py): the capture directory as the Triton server sees it
    # (None: off), the fraction of requests kept, the directory's byte budget, the chunk cadence.
    # `capture_via`: "backend", ekya_onnx captures what it serves itself; "wrapper", the public name is a
    # Python (BLS) model that forwards to the ONNX model "<name>.onnx" (same versions) and captures, which
    # is how the native onnxruntime backend (NVIDIA's image) captures; "auto": wrapper for onnxruntime.
    capture_dir: str | None = None
    capture_via: Literal["auto", "backend", "wrapper"] = "auto"
    capture_rate: float = Field(0.0, ge=0.0, le=1.0)
    capture_budget_bytes: int = Field(0, ge=0)
    capture_chunk_seconds: float = Field(5.0, gt=0.0, le=3600.0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_model_name(value, allow_reserved=True)

    @field_validator("input_dims", "output_dims")
    @classmethod
    def _dims(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(d <= 0 and d != -1 for d in value):
            raise ValueError(f"dimensions must be positive (or -1: free), got {value}")
        return value

    @model_validator(mode="after")
    def _batching(self) -> ModelSpec:
        if self.max_batch_size == 0 and self.dynamic_batching:
            raise ValueError(f"{self.name}: max_batch_size 0 (no batching by Triton) with dynamic_batching on")
        return self

    @property
    def wrapped(self) -> bool:
        """Whether the public name is the capture wrapper in front of the ONNX model "<name>.onnx"."""
        if self.capture_dir is None or self.capture_via == "backend":
            return False
        return self.capture_via == "wrapper" or self.backend == "onnxruntime"

    @property
    def inner_name(self) -> str:
        return inner_model_name(self.name)


# The inner model of a wrapped camera keeps the previous version loaded too: the public model's version
# N-1 calls the inner's N-1 until the public model's own swap to N is done.
INNER_VERSIONS_SERVED = 2


def render_config(spec: ModelSpec) -> str:
    """config.pbtxt text for the model Triton serves under `spec.name` (tensor FP32 in, FP32 out; batch
    dimension implicit): the ONNX model itself, or for a wrapped spec the capture wrapper."""
    if spec.wrapped:
        return _render(spec, spec.name, "python", instance_kind="KIND_CPU", gpus=(), versions_served=1,
                       queue_bounded=True, parameters=_wrapper_parameters(spec))
    return _render(spec, spec.name, spec.backend, instance_kind=spec.instance_kind, gpus=spec.gpus,
                   versions_served=spec.versions_served, queue_bounded=True,
                   parameters=_backend_parameters(spec, capture=True))


def render_inner_config(spec: ModelSpec) -> str:
    """config.pbtxt of a wrapped spec's ONNX model "<name>.onnx": its backend, instances and devices, no
    queue bound (the wrapper in front sheds) and no capture (the wrapper captures)."""
    if not spec.wrapped:
        raise ValueError(f"{spec.name}: not a wrapped model, it has no inner model")
    return _render(spec, spec.inner_name, spec.backend, instance_kind=spec.instance_kind, gpus=spec.gpus,
                   versions_served=max(INNER_VERSIONS_SERVED, spec.versions_served), queue_bounded=False,
                   parameters=_backend_parameters(spec, capture=False))


def _backend_parameters(spec: ModelSpec, capture: bool) -> dict[str, str]:
    if spec.backend != "ekya_onnx":
        return {}
    parameters = {"intra_op_threads": str(spec.intra_op_threads), "runtime": spec.runtime}
    if capture and spec.capture_dir is not None:
        parameters.update(_capture_parameters(spec))
    return parameters


def _capture_parameters(spec: ModelSpec) -> dict[str, str]:
    assert spec.capture_dir is not None
    return {"capture_dir": spec.capture_dir, "capture_rate": repr(spec.capture_rate),
            "capture_budget_bytes": str(spec.capture_budget_bytes),
            "capture_chunk_seconds": repr(spec.capture_chunk_seconds)}


def _wrapper_parameters(spec: ModelSpec) -> dict[str, str]:
    return {"inner_model": spec.inner_name, **_capture_parameters(spec)}


def _render(spec: ModelSpec, name: str, backend: str, *, instance_kind: str, gpus: tuple[int, ...],
            versions_served: int, queue_bounded: bool, parameters: dict[str, str]) -> str:
    def dims(values: tuple[int, ...]) -> str:
        return "[ " + ", ".join(str(v) for v in values) + " ]"

    lines = [
        f'name: "{name}"',
        f'backend: "{backend}"',
        f"max_batch_size: {spec.max_batch_size}",
        "input [",
        f'  {{ name: "{spec.input_name}", data_type: TYPE_FP32, dims: {dims(spec.input_dims)} }}',
        "]",
        "output [",
        f'  {{ name: "{spec.output_name}", data_type: TYPE_FP32, dims: {dims(spec.output_dims)} }}',
        "]",
        "instance_group [",
        "  {",
        f"    count: {spec.instance_count}",
        f"    kind: {instance_kind}",
    ]
    if instance_kind == "KIND_GPU" and gpus:
        lines.append(f"    gpus: [ {', '.join(str(g) for g in gpus)} ]")
    lines += ["  }", "]"]
    lines.append(f"version_policy: {{ latest: {{ num_versions: {versions_served} }} }}")
    if spec.dynamic_batching:
        lines += render_dynamic_batching(spec, bounded=queue_bounded)
    if parameters:
        lines.append("parameters [")
        lines.append(",\n".join(f'  {{ key: "{key}", value: {{ string_value: {_quoted(value)} }} }}'
                                for key, value in parameters.items()))
        lines.append("]")
    return "\n".join(lines) + "\n"


def render_dynamic_batching(spec: ModelSpec, bounded: bool = True) -> list[str]:
    """The `dynamic_batching` block, with the bounded queue (timeout_action REJECT) when one is set."""
    lines = ["dynamic_batching {", f"  max_queue_delay_microseconds: {spec.max_queue_delay_us}"]
    if bounded and (spec.max_queue_size or spec.queue_timeout_us):
        lines += [
            "  default_queue_policy {",
            "    timeout_action: REJECT",
            f"    default_timeout_microseconds: {spec.queue_timeout_us}",
            "    allow_timeout_override: false",
            f"    max_queue_size: {spec.max_queue_size}",
            "  }",
        ]
    return lines + ["}"]


def _quoted(text: str) -> str:
    """A protobuf text-format string literal (a path may hold quotes or backslashes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
