"""Check an ONNX model before it may enter the repository.

onnx.checker, tensor names and shapes against the spec, onnxruntime output on a probe batch equal to
the reference (PyTorch) output within tolerance, and no non-finite outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.triton.spec import ModelSpec


class InvalidModelError(ValueError):
    """The model was rejected; nothing was written to the repository."""


@dataclass(frozen=True)
class ValidationReport:
    max_abs_diff: float | None
    probe_batch: int


def _static_dims(value_info) -> list[int | None]:
    dims = []
    for dim in value_info.type.tensor_type.shape.dim:
        dims.append(dim.dim_value if dim.HasField("dim_value") else None)
    return dims


def validate_onnx(
    path: str | Path,
    spec: ModelSpec,
    probe: np.ndarray | None = None,
    expected: np.ndarray | None = None,
    *,
    atol: float = 1e-3,
    rtol: float = 1e-3,
) -> ValidationReport:
    import onnx
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise InvalidModelError(f"{path} does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises several unrelated types for corrupt files
        raise InvalidModelError(f"{path.name} is not a valid ONNX model: {exc}") from exc

    graph_inputs = {i.name: i for i in model.graph.input}
    graph_outputs = {o.name: o for o in model.graph.output}
    batched = spec.max_batch_size > 0
    for kind, name, want, table in (
        ("input", spec.input_name, spec.input_dims, graph_inputs),
        ("output", spec.output_name, spec.output_dims, graph_outputs),
    ):
        if name not in table:
            raise InvalidModelError(f"model has no {kind} named {name!r} (it has {sorted(table)})")
        dims = _static_dims(table[name])
        if not batched:  # full shapes; -1 in the spec: any size
            if len(dims) != len(want) or any(d is not None and w != -1 and d != w for d, w in zip(dims, want)):
                raise InvalidModelError(f"{kind} {name!r} has shape {dims}, the spec expects {list(want)}")
            continue
        if len(dims) != len(want) + 1 or any(d is not None and d != w for d, w in zip(dims[1:], want)):
            raise InvalidModelError(f"{kind} {name!r} has shape {dims}, the spec expects [batch, {', '.join(map(str, want))}]")
        if dims[0] is not None and dims[0] != 0:
            raise InvalidModelError(f"{kind} {name!r} has a fixed batch dimension {dims[0]}; export it dynamic")

    if probe is None:
        shape = (2, *spec.input_dims) if batched else tuple(1 if d == -1 else d for d in spec.input_dims)
        probe = np.random.default_rng(0).random(shape, dtype=np.float32)
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (output,) = session.run([spec.output_name], {spec.input_name: probe.astype(np.float32)})
    except Exception as exc:
        raise InvalidModelError(f"onnxruntime cannot run {path.name}: {exc}") from exc
    if not batched:
        if output.ndim != len(spec.output_dims) or any(w != -1 and d != w for d, w in zip(output.shape, spec.output_dims)):
            raise InvalidModelError(f"output shape {output.shape} on a probe of shape {probe.shape}, expected "
                                    f"{list(spec.output_dims)}")
    elif output.shape != (probe.shape[0], *spec.output_dims):
        raise InvalidModelError(f"output shape {output.shape} on a probe of {probe.shape[0]}, expected "
                                f"{(probe.shape[0], *spec.output_dims)}")
    if not np.all(np.isfinite(output)):
        raise InvalidModelError("the model produces non-finite outputs (NaN or inf) on the probe batch")
    diff = None
    if expected is not None:
        if expected.shape != output.shape:
            raise InvalidModelError(f"reference output shape {expected.shape} != onnxruntime's {output.shape}")
        diff = float(np.max(np.abs(output - expected)))
        if not np.allclose(output, expected, atol=atol, rtol=rtol):
            raise InvalidModelError(f"onnxruntime output differs from the reference by up to {diff:.3g} "
                                    f"(tolerance atol={atol}, rtol={rtol})")
    return ValidationReport(max_abs_diff=diff, probe_batch=int(probe.shape[0]))
