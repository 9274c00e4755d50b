"""ekya_onnx: a Python-based Triton backend that serves `<version>/model.onnx`.

Why not the native onnxruntime backend: the tritonserver we embed (from nvidia-pytriton) ships only the
python backend. A Python-based backend keeps each camera's model directory identical to what NVIDIA's
Triton container serves natively (config.pbtxt + N/model.onnx), so one repository serves both; the
writer only flips `backend:` between "ekya_onnx" and "onnxruntime".

Two runtimes, chosen by the model's `runtime` parameter ("auto" by default):
- onnxruntime: CPU instances, and GPU instances where onnxruntime has its CUDA provider;
- torch: the same ONNX graph converted to a torch module (onnx2torch) and run on the instance's GPU, for
  KIND_GPU instances on a machine whose onnxruntime has no CUDA provider (pip's onnxruntime wheel). Its
  tensors cross the stub through DLPack only.
Requests queued together by the dynamic batcher are concatenated and run in one call.

Capture (the `capture_dir` parameter; absent: off): after the responses are made, a sample of the requests'
inputs, with their request id, arrival time and served top-1 class, goes to protocol/capture.py's writer,
which writes it into `<capture_dir>/<model>/` for the controller to label and train on. It never fails
or delays a request; its counters are written beside the chunks for the controller's metrics.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the python backend stub

# The stub's interpreter ignores PYTHONPATH: the server's launcher passes the controller's import path.
for _entry in os.environ.get("EKYA_STUB_SYS_PATH", "").split(os.pathsep):
    if _entry and _entry not in sys.path:
        sys.path.append(_entry)


def _is_gpu(kind: str) -> bool:
    """The stub names an instance's kind "GPU" (config.pbtxt says KIND_GPU): accept both."""
    return kind.upper().removeprefix("KIND_") == "GPU"


def _ort_providers(kind: str, device_id: int) -> list:
    import onnxruntime as ort

    if _is_gpu(kind) and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def choose_runtime(requested: str, kind: str) -> str:
    if requested in ("onnxruntime", "torch"):
        return requested
    if requested not in ("", "auto"):
        raise pb_utils.TritonModelException(f"runtime must be auto, onnxruntime or torch, got {requested!r}")
    if not _is_gpu(kind):
        return "onnxruntime"
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return "onnxruntime"
    try:
        import torch
    except ImportError:
        return "onnxruntime"
    return "torch" if torch.cuda.is_available() else "onnxruntime"


class _OnnxRuntime:
    def __init__(self, path: str, kind: str, device_id: int, threads: int) -> None:
        import onnxruntime as ort

        if int(np.__version__.split(".")[0]) >= 2:
            # nvidia-pytriton's stubs exchange arrays through the numpy 1 ABI: under numpy 2 every tensor
            # arrives with item size 0 (inputs with zero strides, outputs empty), silently.
            raise pb_utils.TritonModelException(
                f"the onnxruntime runtime needs numpy < 2 in the python backend stub, found {np.__version__}; "
                "use a numpy 1 environment or GPU instances (runtime torch)")
        options = ort.SessionOptions()
        # Each Triton instance is its own stub process: keep onnxruntime from grabbing every core,
        # so instance counts (not hidden thread pools) decide how much CPU a camera gets.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, sess_options=options, providers=_ort_providers(kind, device_id))

    def run(self, requests: list, input_names: list[str], output_names: list[str], dtypes: list) -> list:
        # Per request, the stub's overhead is a sizeable part of a small model's time on a small CPU:
        # a lone request is fed as it is (no concatenation copy), and outputs are split with plain ints.
        per_request = [[pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in input_names] for r in requests]
        if len(per_request) == 1:
            feed = dict(zip(input_names, per_request[0]))
        else:
            feed = {n: np.concatenate([a[i] for a in per_request]) for i, n in enumerate(input_names)}
        outputs = [np.asarray(out, dtype=dtype) for out, dtype in zip(self.session.run(output_names, feed), dtypes)]
        if len(per_request) == 1:
            return [[pb_utils.Tensor(name, out) for name, out in zip(output_names, outputs)]]
        responses, start = [], 0
        for arrays in per_request:
            end = start + len(arrays[0])
            responses.append([pb_utils.Tensor(name, out[start:end]) for name, out in zip(output_names, outputs)])
            start = end
        return responses


class _TorchRuntime:
    def __init__(self, path: str, device_id: int, gpu: bool) -> None:
        import onnx
        import torch
        from onnx2torch import convert

        from common.onnx_graph import resolve_identities

        self.torch = torch
        if gpu and not torch.cuda.is_available():
            raise pb_utils.TritonModelException("a GPU instance, but torch sees no CUDA device")
        self.device = torch.device(f"cuda:{device_id}" if gpu else "cpu")
        self.module = convert(resolve_identities(onnx.load(path))).eval().to(self.device)

    def run(self, requests: list, input_names: list[str], output_names: list[str], dtypes: list) -> list:
        torch = self.torch
        from torch.utils.dlpack import from_dlpack, to_dlpack

        per_request = [[from_dlpack(pb_utils.get_input_tensor_by_name(r, n).to_dlpack()) for n in input_names]
                       for r in requests]
        feed = [torch.cat([t[i] for t in per_request]).to(self.device, non_blocking=True)
                for i in range(len(input_names))]
        with torch.inference_mode():
            out = self.module(*feed)
        outputs = [o.float().cpu() for o in (out if isinstance(out, (list, tuple)) else [out])]
        if len(per_request) == 1:  # whole: a model Triton does not batch (a detector's [N, 6]) has no batch axis
            return [[pb_utils.Tensor.from_dlpack(name, to_dlpack(o.contiguous())) for name, o in zip(output_names, outputs)]]
        sizes = [t[0].shape[0] for t in per_request]
        responses, start = [], 0
        for size in sizes:
            responses.append([pb_utils.Tensor.from_dlpack(name, to_dlpack(o[start:start + size].contiguous()))
                              for name, o in zip(output_names, outputs)])
            start += size
        return responses


class _Capture:
    """Hands a sample of the served requests to protocol/capture.py's writer; never raises."""

    def __init__(self, params: dict[str, str], args: dict, input_name: str, output_name: str) -> None:
        from protocol.capture import DEFAULT_CHUNK_SECONDS, CaptureWriter

        model = args["model_name"]
        self.input_name, self.output_name = input_name, output_name
        self.version = int(args.get("model_version", "0") or 0)
        # its counters go to a file beside the chunks, for the controller's metrics (not Triton's custom
        # metrics: this Triton aborts on a model reload while they exist)
        self.writer = CaptureWriter(
            os.path.join(params["capture_dir"], model), float(params.get("capture_rate", "0") or 0),
            int(params.get("capture_budget_bytes", "0") or 0),
            float(params.get("capture_chunk_seconds", "") or DEFAULT_CHUNK_SECONDS)).start()

    def offer(self, requests: list, outputs: list, arrival: float) -> None:
        writer = self.writer
        for request, tensors in zip(requests, outputs):
            try:
                request_id = request.request_id() or ""
                if not writer.wants(request_id):
                    continue
                batch = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
                logits = next(t for t in tensors if t.name() == self.output_name).as_numpy()
                writer.add(batch, logits.argmax(axis=1), request_id=request_id, arrival=arrival,
                           version=self.version)
            except Exception as exc:  # counted by the writer; the response is already made
                writer.record_error("reading a request", exc)

    def close(self) -> None:
        self.writer.close()


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"missing model file {path}")
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        kind = args.get("model_instance_kind", "KIND_CPU")
        device_id = int(args.get("model_instance_device_id", "0") or 0)
        self.runtime = choose_runtime(params.get("runtime", "auto"), kind)
        if self.runtime == "torch":
            self.engine: _OnnxRuntime | _TorchRuntime = _TorchRuntime(path, device_id, _is_gpu(kind))
        else:
            self.engine = _OnnxRuntime(path, kind, device_id, int(params.get("intra_op_threads", "1") or 1))
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.output_dtypes = [pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]]
        self.capture = (_Capture(params, args, self.input_names[0], self.output_names[0])
                        if params.get("capture_dir") else None)

    def execute(self, requests: list) -> list:
        arrival = time.time()  # as near to the requests' arrival as the python backend lets us see
        try:
            outputs = self.engine.run(requests, self.input_names, self.output_names, self.output_dtypes)
        except Exception as exc:  # a bad input fails its requests, not the server
            error = pb_utils.TritonError(f"{self.runtime} failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = [pb_utils.InferenceResponse(output_tensors=tensors) for tensors in outputs]
        if self.capture is not None:
            self.capture.offer(requests, outputs, arrival)
        return responses

    def finalize(self) -> None:
        if self.capture is not None:
            self.capture.close()
        self.engine = None  # type: ignore[assignment]
