"""A camera's public model when its ONNX model runs on a backend that cannot capture (NVIDIA's native
onnxruntime): a Python (BLS) model under the camera's name that forwards each batch to the inner model
and keeps a sample of what it served (protocol/capture.py, copied beside this file as ekya_capture.py).

The repository writer (controller/triton/repository.py) puts this file and the capture module into every
version directory `<camera>/<N>/`, beside the inner model's `<camera>.onnx/<N>/model.onnx`: version N of
the public model calls version N of the inner model, so the `model_version` a client gets back, the
repository index and the captured samples all name the version that computed the answer. It needs only
what NVIDIA's Triton image has: the python backend and numpy.

Requests queued together by the dynamic batcher go to the inner model as one batch; if that batch fails,
each request is retried alone so that one bad request fails alone. Capture never fails or delays a
request: it runs after the responses are made, and the writer catches and counts its own errors.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the python backend stub

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # ekya_capture.py, copied beside this file

from ekya_capture import DEFAULT_CHUNK_SECONDS, CaptureWriter  # noqa: E402


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.inner = params["inner_model"]
        self.version = int(args["model_version"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        # the inner model's logits in host memory, also from GPU instances (as_numpy reads only those)
        self.on_cpu = ({"preferred_memory": pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)}
                       if hasattr(pb_utils, "PreferredMemory") else {})
        self.writer = None
        if params.get("capture_dir"):
            self.writer = CaptureWriter(
                os.path.join(params["capture_dir"], args["model_name"]), float(params.get("capture_rate") or 0),
                int(params.get("capture_budget_bytes") or 0),
                float(params.get("capture_chunk_seconds") or DEFAULT_CHUNK_SECONDS)).start()

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        request = pb_utils.InferenceRequest(model_name=self.inner, model_version=self.version,
                                            inputs=[pb_utils.Tensor(self.input_name, batch)],
                                            requested_output_names=[self.output_name], **self.on_cpu)
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(response.error().message())
        return pb_utils.get_output_tensor_by_name(response, self.output_name).as_numpy()

    def execute(self, requests: list) -> list:
        arrival = time.time()  # as near to the requests' arrival as the python backend lets us see
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        outputs: list[np.ndarray | Exception] = []
        try:
            if len(batches) == 1:
                outputs = [self._infer(batches[0])]
            else:
                logits, start = self._infer(np.concatenate(batches)), 0
                for batch in batches:
                    outputs.append(logits[start:start + len(batch)])
                    start += len(batch)
        except Exception:
            outputs = []
            for batch in batches:  # one at a time, so that a bad request fails alone
                try:
                    outputs.append(self._infer(batch))
                except Exception as exc:
                    outputs.append(exc)
        responses = []
        for output in outputs:
            if isinstance(output, Exception):
                error = pb_utils.TritonError(f"{self.inner} v{self.version} failed: {output}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
            else:
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, output)]))
        if self.writer is not None:
            self._capture(requests, batches, outputs, arrival)
        return responses

    def _capture(self, requests: list, batches: list, outputs: list, arrival: float) -> None:
        writer = self.writer
        for request, batch, output in zip(requests, batches, outputs):
            if isinstance(output, Exception):
                continue
            try:
                request_id = request.request_id() or ""
                if writer.wants(request_id):
                    writer.add(batch, output.argmax(axis=1), request_id=request_id, arrival=arrival,
                               version=self.version)
            except Exception as exc:  # counted by the writer; the response is already made
                writer.record_error("reading a request", exc)

    def finalize(self) -> None:
        if self.writer is not None:
            self.writer.close()
