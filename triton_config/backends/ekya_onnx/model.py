"""ekya_onnx: a Python-based Triton backend that serves `<version>/model.onnx` with onnxruntime.

Why not the native onnxruntime backend: the tritonserver we embed (from nvidia-pytriton) ships only the
python backend. A Python-based backend keeps each camera's model directory identical to what NVIDIA's
Triton container serves natively (config.pbtxt + N/model.onnx), so one repository serves both; the
writer only flips `backend:` between "ekya_onnx" and "onnxruntime".

Requests queued together by the dynamic batcher are concatenated and run in one onnxruntime call.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # provided by the python backend stub


def _providers(kind: str, device_id: int) -> list:
    available = ort.get_available_providers()
    if kind == "KIND_GPU" and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"missing model file {path}")
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        # Each Triton instance is its own stub process: keep onnxruntime from grabbing every core,
        # so instance counts (not hidden thread pools) decide how much CPU a camera gets.
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1") or 1)
        options.inter_op_num_threads = 1
        kind = args.get("model_instance_kind", "KIND_CPU")
        device_id = int(args.get("model_instance_device_id", "0") or 0)
        self.session = ort.InferenceSession(path, sess_options=options, providers=_providers(kind, device_id))
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.output_dtypes = [pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]]

    def execute(self, requests: list) -> list:
        inputs_per_request = [
            [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names] for r in requests
        ]
        sizes = [arrays[0].shape[0] for arrays in inputs_per_request]
        feed = {
            name: np.concatenate([arrays[i] for arrays in inputs_per_request], axis=0)
            for i, name in enumerate(self.input_names)
        }
        try:
            outputs = self.session.run(self.output_names, feed)
        except Exception as exc:  # a bad input fails its requests, not the server
            error = pb_utils.TritonError(f"onnxruntime failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(name, out[start : start + size].astype(dtype, copy=False))
                for name, out, dtype in zip(self.output_names, outputs, self.output_dtypes)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def finalize(self) -> None:
        self.session = None
