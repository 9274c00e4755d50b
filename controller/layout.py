"""Where a deployment keeps its state on disk (all under the config's data directory).

    state.json                                  the controller's persisted state
    models/                                     bootstrap cache (initial edge models, golden model)
    model_repository/                           Triton model repository (embedded mode default)
    triton/                                     embedded server runtime, log, server.json
    cameras/<cam>/...                           shared with the camera clients: protocol/files.py
    windows/w<W>/<cam>/{train,test}.npz         golden-labelled data of a closed window
    checkpoints/<cam>/v<N>.pt                   the PyTorch checkpoint behind each served version
    jobs/<job>/                                 trainer jobs (job.json, progress, checkpoints, result)
    requests/rollback-*.json                    rollbacks asked for by `ekya rollback`, until applied
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from protocol.files import CameraFiles, window_tag


@dataclass(frozen=True)
class DataLayout(CameraFiles):
    """The camera files (directives, spools, results) plus the controller's own."""

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    def window_dir(self, window: int, camera: str) -> Path:
        return self.root / "windows" / window_tag(window) / camera

    @property
    def requests_dir(self) -> Path:
        return self.root / "requests"

    def checkpoint(self, camera: str, version: int) -> Path:
        return self.root / "checkpoints" / camera / f"v{version}.pt"
