"""Users' own model files, read and checked: an ONNX classifier's inputs and outputs, and an initial
edge model from a state dict or an ONNX file, made into our model (trainer/models.py) for retraining.

Every error is a UserModelError naming the file and what does not fit.

Accepted edge weights (`edge_model: {family: F, weights: PATH}`), a file torch.load reads (weights only):
- our checkpoint (`save_model`, format ekya-model/1) of family F;
- our model's state dict (keys `backbone.*` and `head.*`, as `CropClassifier.state_dict()`);
- a torchvision state dict of F (resnet18, shufflenet_v2_x0_5: keys as `torchvision.models.F().state_dict()`)
  whose `fc` has one output per deployment class: `fc` becomes a one-layer head.
  Also wrapped as {"state_dict": ...} or {"model": ...}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.streams.base import CLASSES


class UserModelError(ValueError):
    """A user's model file that cannot be used; the message names the file and the mismatch."""


@dataclass(frozen=True)
class OnnxClassifier:
    """What a classifier ONNX file takes and gives (dims without the batch; None: dynamic)."""

    path: Path
    input_name: str
    input_dims: tuple[int | None, ...]
    output_name: str
    classes: int  # the output's width, as a probe run gives it


def _dims(value_info) -> list[int | None]:  # type: ignore[no-untyped-def]
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def inspect_classifier(path: Path, what: str, *, layout: str = "nchw", input_size: int) -> OnnxClassifier:
    """Read and check an ONNX classifier: one float32 input [batch, 3, S, S] (NHWC: [batch, S, S, 3]) with
    S = input_size where the file fixes it, a dynamic batch, one float32 output [batch, classes]. A probe
    batch of two runs through onnxruntime to learn the class count. `what` names the config key."""
    where = f"{what} {path}"
    inputs, outputs = _graph_tensors(path, where)
    if len(inputs) != 1 or len(outputs) < 1:
        raise UserModelError(f"{where}: expected one input and one output, it has inputs "
                             f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}")
    tensor, out = _float_tensors(inputs[0], outputs[0], where)
    dims = _dims(tensor)
    want = [3, input_size, input_size] if layout == "nchw" else [input_size, input_size, 3]
    shape_text = f"[batch, {', '.join(map(str, want))}]"
    if len(dims) != 4 or any(d is not None and d != w for d, w in zip(dims[1:], want)):
        raise UserModelError(f"{where}: input {tensor.name!r} has shape {_shape(dims)}; the config's input_size "
                             f"{input_size} ({layout.upper()}) needs {shape_text}")
    if dims[0] is not None:
        raise UserModelError(f"{where}: input {tensor.name!r} has a fixed batch of {dims[0]}; export it with a "
                             "dynamic batch dimension (dynamic_axes)")
    out_dims = _dims(out)
    if len(out_dims) != 2:
        raise UserModelError(f"{where}: output {out.name!r} has shape {_shape(out_dims)}, expected [batch, classes]")
    classes = _probe_classes(path, where, tensor.name, out.name, want)
    return OnnxClassifier(path, tensor.name, tuple(dims[1:]), out.name, classes)


@dataclass(frozen=True)
class OnnxDetectorModel:
    """What a detector ONNX file takes and gives, as full shapes (-1: a dimension the file leaves free)."""

    path: Path
    input_name: str
    input_dims: tuple[int, ...]  # [1 or -1, 3, S, S]
    output_name: str
    output_dims: tuple[int, ...]


def inspect_detector(path: Path, what: str, *, input_size: int) -> OnnxDetectorModel:
    """Read and check an ONNX detector: its first input float32 [batch or 1, 3, S, S] with S = input_size
    where the file fixes it, its first output float32. `what` names the config key."""
    where = f"{what} {path}"
    inputs, outputs = _graph_tensors(path, where)
    if not inputs or not outputs:
        raise UserModelError(f"{where}: expected an image input and an output")
    tensor, out = _float_tensors(inputs[0], outputs[0], where)
    dims = _dims(tensor)
    want = [3, input_size, input_size]
    if len(dims) != 4 or any(d is not None and d != w for d, w in zip(dims[1:], want)):
        raise UserModelError(f"{where}: input {tensor.name!r} has shape {_shape(dims)}; an image detector with "
                             f"the config's input_size {input_size} needs [1, 3, {input_size}, {input_size}]")
    if dims[0] not in (None, 1):
        raise UserModelError(f"{where}: input {tensor.name!r} has a fixed batch of {dims[0]}; the camera sends "
                             "one frame a call (export it with batch 1 or a dynamic batch)")
    out_dims = _dims(out)
    if not 2 <= len(out_dims) <= 3:
        raise UserModelError(f"{where}: output {out.name!r} has shape {_shape(out_dims)}, expected one frame's "
                             "detections ([N, 6], [1, N, 6], or a YOLO head's [1, 4+C, N])")
    return OnnxDetectorModel(path, tensor.name, (-1 if dims[0] is None else 1, *want), out.name,
                             tuple(-1 if d is None else d for d in out_dims))


def _graph_tensors(path: Path, where: str) -> tuple[list, list]:  # type: ignore[type-arg]
    """The ONNX file's graph inputs (initializers left out) and outputs; refused when it is missing or
    unreadable."""
    import onnx

    if not path.is_file():
        raise UserModelError(f"{where}: file not found")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises several unrelated types for files it cannot read
        raise UserModelError(f"{where}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits], list(model.graph.output)


def _float_tensors(tensor, out, where: str):  # type: ignore[no-untyped-def]
    """(input, output), both float32, or refused naming the one that is not."""
    from onnx import TensorProto

    for kind, value in (("input", tensor), ("output", out)):
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise UserModelError(f"{where}: its {kind} {value.name!r} is "
                                 f"{TensorProto.DataType.Name(value.type.tensor_type.elem_type)}, expected FLOAT")
    return tensor, out


def _shape(dims: list[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _probe_classes(path: Path, where: str, input_name: str, output_name: str, dims: list[int]) -> int:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (logits,) = session.run([output_name], {input_name: np.zeros((2, *dims), np.float32)})
    except Exception as exc:
        raise UserModelError(f"{where}: onnxruntime cannot run it on a batch of 2 ({type(exc).__name__}: "
                             f"{exc})") from exc
    if logits.ndim != 2 or logits.shape[0] != 2:
        raise UserModelError(f"{where}: output {output_name!r} is {list(logits.shape)} for a batch of 2, "
                             "expected [2, classes]")
    return int(logits.shape[1])


def check_class_count(found: int, classes: tuple[str, ...], where: str, key: str) -> None:
    if found != len(classes):
        raise UserModelError(f"{where}: the model has {found} output classes, {key} lists {len(classes)} "
                             f"({', '.join(classes)})")


# ------------------------------------------------------------------------------------ edge models
def edge_from_onnx(path: Path, classes: tuple[str, ...], input_size: int, hidden: int):  # -> CropClassifier
    """An initial edge model from the user's ONNX file (float32 [batch, 3, S, S] pixels in [0, 1], logits
    [batch, classes]), converted to torch for retraining."""
    from trainer.converted import ConversionError, split_onnx_classifier
    from trainer.models import CONVERTED, CropClassifier, ModelMeta

    where = f"edge_model.onnx {path}"
    found = inspect_classifier(path, "edge_model.onnx", input_size=input_size)
    check_class_count(found.classes, classes, where, "classes")
    source = path.read_bytes()
    try:
        backbone, head = split_onnx_classifier(source, where)
    except ConversionError as exc:
        raise UserModelError(str(exc)) from exc
    widths = [head[0].in_features] + [m.out_features for m in head if hasattr(m, "out_features")]
    meta = ModelMeta(family=CONVERTED, hidden=widths[1] if len(widths) > 2 else hidden, input_size=input_size,
                     classes=classes, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                     extra={"role": "edge", "from": str(path)})
    model = CropClassifier(meta, backbone=(backbone, widths[0]), widths=widths, source_onnx=source)
    model.head.load_state_dict(head.state_dict())
    return _checked_against_onnx(model.eval(), path, where, input_size)


def _checked_against_onnx(model, path: Path, where: str, input_size: int):  # type: ignore[no-untyped-def]
    """The converted model must answer as the ONNX file does (onnx2torch converts most graphs faithfully)."""
    import onnxruntime as ort
    import torch

    probe = np.random.default_rng(0).random((2, 3, input_size, input_size), dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: probe})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(probe)).numpy()
    limit = 1e-3 * max(1.0, float(np.abs(expected).max()))
    if got.shape != expected.shape or not float(np.abs(got - expected).max()) <= limit:
        raise UserModelError(f"{where}: converted to torch it answers differently from onnxruntime "
                             f"(max difference {float(np.abs(got - expected).max()):.2e}); it cannot be retrained")
    return model


def edge_from_weights(path: Path, family: str, classes: tuple[str, ...] = CLASSES, input_size: int = 64,
                      hidden: int = 64):  # -> CropClassifier
    """An initial edge model from a weights file (the formats in the module's docstring)."""
    import torch

    from trainer.models import CHECKPOINT_FORMAT, CropClassifier, ModelError, ModelMeta, head_widths

    where = f"edge_model.weights {path}"
    if not path.is_file():
        raise UserModelError(f"{where}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for files it cannot read
        raise UserModelError(f"{where}: not a weights file torch can read (weights only): "
                             f"{type(exc).__name__}: {exc}") from exc
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        meta = ModelMeta.from_dict(obj["meta"])
        if meta.family != family:
            raise UserModelError(f"{where}: a {meta.family} checkpoint, edge_model.family is {family}")
        if tuple(meta.classes) != tuple(classes):
            raise UserModelError(f"{where}: its classes are {list(meta.classes)}, the deployment's {list(classes)}")
        if meta.input_size != input_size:
            raise UserModelError(f"{where}: made for {meta.input_size}px input, edge_model.input_size is {input_size}")
        state = obj["state_dict"]
    else:
        state = _state_dict(obj, where)
        state = state if any(k.startswith("backbone.") for k in state) else _from_torchvision(state, family, where)
        meta = ModelMeta(family=family, hidden=hidden, input_size=input_size, classes=tuple(classes),
                         extra={"role": "edge", "from": str(path)})
    widths = head_widths(state)
    if widths is None:
        raise UserModelError(f"{where}: no classification head in the weights (head.0.weight, or fc.weight)")
    check_class_count(widths[-1], classes, where, "classes")
    try:
        model = CropClassifier(meta, widths=widths)
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (ModelError, RuntimeError) as exc:
        raise UserModelError(f"{where}: the weights do not fit a {family}: {exc}") from exc
    missing = [k for k in missing if k not in ("mean", "std")]  # ours: the normalisation comes from the meta
    if missing or unexpected:
        raise UserModelError(f"{where}: the weights do not fit a {family}: missing {missing[:5]}"
                             f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                             f"{'...' if len(unexpected) > 5 else ''}")
    return model.eval()


def _state_dict(obj: object, where: str) -> dict:
    import torch

    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserModelError(f"{where}: not a state dict (a mapping of parameter names to tensors)")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}  # (DataParallel's prefix)


def _from_torchvision(state: dict, family: str, where: str) -> dict:
    """A torchvision state dict of `family` as ours: its fc is the head's one Linear layer."""
    if "fc.weight" not in state:
        raise UserModelError(f"{where}: neither our model's weights (backbone.*, head.*) nor a torchvision "
                             f"{family} state dict with an fc layer (for mobilenet_v3_small, give our checkpoint)")
    out = {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    out["head.0.weight"], out["head.0.bias"] = state["fc.weight"], state["fc.bias"]
    return out
