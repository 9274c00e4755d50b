"""The camera's inference calls to Triton over gRPC (tritonclient.grpc), each with a timeout."""

from __future__ import annotations

import numpy as np


class InferenceError(RuntimeError):
    """An inference call failed; the message names the model and the server's reason."""


class InferenceClient:
    def __init__(self, url: str, timeout_s: float) -> None:
        import tritonclient.grpc as grpcclient  # heavy import, deferred until a client is made

        self._grpc = grpcclient
        self.url = url
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(url=url)

    @staticmethod
    def preload() -> None:
        """Import the gRPC client library now (a few tenths of a second on a small CPU), so that the first
        client made later, at a camera's first frame say, does not pay for it."""
        import tritonclient.grpc  # noqa: F401

    def close(self) -> None:
        self._client.close()

    def server_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready(client_timeout=self.timeout_s))
        except Exception:  # an unreachable server is simply not ready
            return False

    def infer_with_version(self, model: str, batch: np.ndarray, *, input_name: str = "input",
                           output_name: str = "logits", request_id: str = "") -> tuple[np.ndarray, int]:
        """`model`'s output for one float32 batch, and the model version that answered (a swap shows).
        `request_id` travels with the request (KServe v2 `id`): the server may sample requests by it."""
        from tritonclient.utils import InferenceServerException

        array = np.ascontiguousarray(batch, dtype=np.float32)
        tensor = self._grpc.InferInput(input_name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        output = self._grpc.InferRequestedOutput(output_name)
        try:
            result = self._client.infer(model, [tensor], outputs=[output], request_id=request_id,
                                         client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise InferenceError(f"infer {model}: {exc.message() or exc}") from exc
        version = result.get_response().model_version
        return result.as_numpy(output_name), int(version) if version else 0
