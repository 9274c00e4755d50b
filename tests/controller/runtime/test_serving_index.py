"""The Serving port's view of Triton's repository index, against a real tritonserver."""

from __future__ import annotations

import numpy as np

from controller.runtime.serving import TritonServing
from controller.triton.spec import ModelSpec
from tests.triton_helpers import INPUT_DIMS, export_tiny, running_server


def test_served_versions_follow_the_index_and_a_retired_version_stops_serving(tmp_path, triton_runtime):
    models = [export_tiny(tmp_path / f"m{seed}.onnx", seed) for seed in (1, 2)]
    with running_server(tmp_path / "repo", tmp_path / "work", triton_runtime) as (_, client, manager):
        serving = TritonServing(manager, client)
        manager.deploy(ModelSpec(name="cam-a", input_dims=INPUT_DIMS), models[0][0])
        manager.ensure_model(ModelSpec(name="cam-b", input_dims=INPUT_DIMS))
        assert serving.served_versions(["cam-a", "cam-b"]) == {"cam-a": 1, "cam-b": None}
        assert serving.publish("cam-a", models[1][0]) == 2
        assert serving.served_versions(["cam-a"]) == {"cam-a": 2}
        np.testing.assert_allclose(client.infer("cam-a", models[1][1]), models[1][2], rtol=1e-4, atol=1e-5)

        serving.retire_version("cam-a", 2, "test: weights unknown")
        assert serving.repository_versions("cam-a") == [1]
        assert serving.served_versions(["cam-a"]) == {"cam-a": 1}
        np.testing.assert_allclose(client.infer("cam-a", models[0][1]), models[0][2], rtol=1e-4, atol=1e-5)
        trashed = [p / "REASON" for p in manager.repository.trash_entries() if p.name.startswith("cam-a-v2-")]
        assert trashed and "weights unknown" in trashed[0].read_text()
