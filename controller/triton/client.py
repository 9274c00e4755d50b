"""A small typed client over tritonclient.grpc, used by camera clients and the controller.

Every call carries a timeout: a model-control call that never returns must not hang the controller.
Model-control calls send the admin key header the server was started with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ADMIN_KEY_HEADER = "triton-grpc-protocol-admin-key"


class TritonClientError(RuntimeError):
    """A Triton call failed; the message names the model and the server's reason."""


@dataclass(frozen=True)
class ModelStats:
    model: str
    version: str
    success_count: int
    failure_count: int
    inference_count: int
    execution_count: int
    queue_ns: int
    compute_infer_ns: int


class TritonClient:
    def __init__(self, url: str, admin_key: str | None = None, timeout_s: float = 30.0) -> None:
        import tritonclient.grpc as grpcclient  # heavy import, deferred until a client is made

        self._grpc = grpcclient
        self.url = url
        self.timeout_s = timeout_s
        self._admin_headers = {ADMIN_KEY_HEADER: admin_key} if admin_key else None
        self._client = grpcclient.InferenceServerClient(url=url)

    def close(self) -> None:
        self._client.close()

    def reconnect(self) -> None:
        """A fresh channel to the same endpoint. After the server restarted, the old channel may sit in
        gRPC's reconnect backoff (which grows to minutes) and fail every call meanwhile."""
        old, self._client = self._client, self._grpc.InferenceServerClient(url=self.url)
        old.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn, *args, **kwargs):
        from tritonclient.utils import InferenceServerException

        try:
            return fn(*args, **kwargs)
        except InferenceServerException as exc:
            raise TritonClientError(f"{what}: {exc.message() or exc}") from exc

    # -- health ----------------------------------------------------------------------------------
    def server_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready(client_timeout=self.timeout_s))
        except Exception:  # an unreachable server is simply not ready
            return False

    def model_ready(self, model: str, version: str = "") -> bool:
        try:
            return bool(self._client.is_model_ready(model, version, client_timeout=self.timeout_s))
        except Exception:
            return False

    @staticmethod
    def preload() -> None:
        """Import the gRPC client library now (a few tenths of a second on a small CPU), so that the first
        client made later, at a camera's first frame say, does not pay for it."""
        import tritonclient.grpc  # noqa: F401

    # -- inference -------------------------------------------------------------------------------
    def infer(
        self,
        model: str,
        batch: np.ndarray,
        *,
        input_name: str = "input",
        output_name: str = "logits",
        timeout_s: float | None = None,
    ) -> np.ndarray:
        """Run one batch (float32, batch dimension first) through `model`; returns its output array."""
        return self.infer_with_version(model, batch, input_name=input_name, output_name=output_name,
                                       timeout_s=timeout_s)[0]

    def infer_with_version(
        self,
        model: str,
        batch: np.ndarray,
        *,
        input_name: str = "input",
        output_name: str = "logits",
        timeout_s: float | None = None,
    ) -> tuple[np.ndarray, int]:
        """Like infer(), also returning the model version that answered (to see swaps take effect)."""
        array = np.ascontiguousarray(batch, dtype=np.float32)
        tensor = self._grpc.InferInput(input_name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        output = self._grpc.InferRequestedOutput(output_name)
        result = self._call(
            f"infer {model}",
            self._client.infer,
            model,
            [tensor],
            outputs=[output],
            client_timeout=timeout_s or self.timeout_s,
        )
        version = result.get_response().model_version
        return result.as_numpy(output_name), int(version) if version else 0

    # -- metadata --------------------------------------------------------------------------------
    def model_metadata(self, model: str) -> dict:
        return self._call(f"metadata {model}", self._client.get_model_metadata, model, as_json=True,
                          client_timeout=self.timeout_s)

    def model_config(self, model: str) -> dict:
        reply = self._call(f"config {model}", self._client.get_model_config, model, as_json=True,
                           client_timeout=self.timeout_s)
        return reply.get("config", reply)

    def served_version(self, model: str) -> int | None:
        """The newest READY version of `model`, or None when none is ready."""
        index = self.repository_index()
        ready = [int(entry["version"]) for entry in index
                 if entry.get("name") == model and entry.get("state") == "READY" and entry.get("version")]
        return max(ready) if ready else None

    def statistics(self, model: str = "") -> list[ModelStats]:
        reply = self._call(f"statistics {model or '*'}", self._client.get_inference_statistics, model,
                           as_json=True, client_timeout=self.timeout_s)
        stats = []
        for entry in reply.get("model_stats", []):
            inference = entry.get("inference_stats", {})
            stats.append(
                ModelStats(
                    model=entry.get("name", ""),
                    version=entry.get("version", ""),
                    success_count=int(inference.get("success", {}).get("count", 0)),
                    failure_count=int(inference.get("fail", {}).get("count", 0)),
                    inference_count=int(entry.get("inference_count", 0)),
                    execution_count=int(entry.get("execution_count", 0)),
                    queue_ns=int(inference.get("queue", {}).get("ns", 0)),
                    compute_infer_ns=int(inference.get("compute_infer", {}).get("ns", 0)),
                )
            )
        return stats

    # -- model control (restricted: needs the admin key) ----------------------------------------
    def repository_index(self) -> list[dict]:
        reply = self._call("repository index", self._client.get_model_repository_index, as_json=True,
                           headers=self._admin_headers, client_timeout=self.timeout_s)
        return list(reply.get("models", []))

    def load(self, model: str, timeout_s: float | None = None) -> None:
        """(Re)load `model` from the repository; Triton swaps versions without dropping requests."""
        self._call(f"load {model}", self._client.load_model, model, headers=self._admin_headers,
                   client_timeout=timeout_s or self.timeout_s)

    def unload(self, model: str, timeout_s: float | None = None) -> None:
        self._call(f"unload {model}", self._client.unload_model, model, headers=self._admin_headers,
                   client_timeout=timeout_s or self.timeout_s)
