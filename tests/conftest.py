from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def triton_runtime(tmp_path_factory: pytest.TempPathFactory):
    """The embedded tritonserver laid out once per test session (copying it is the slow part)."""
    from controller.triton.runtime import prepare_runtime

    return prepare_runtime(Path(tmp_path_factory.mktemp("triton")) / "runtime")
