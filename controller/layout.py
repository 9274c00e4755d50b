"""Where a deployment keeps its state on disk (all under the config's data directory).

    state.json                                  the controller's persisted state
    windows.jsonl(.1)                           window records older than the state keeps (rotated)
    models/                                     bootstrap cache (initial edge models, golden model)
    model_repository/                           Triton model repository (embedded mode default)
    triton/                                     embedded server runtime, log (rotated: .1), server.json
    cameras/<cam>/...                           shared with the camera clients: protocol/files.py
    windows/w<W>/<cam>/{train,test}.npz         golden-labelled data of a closed window
    checkpoints/<cam>/v<N>.pt                   the PyTorch checkpoint behind each served version
    checkpoints/<cam>/pending-<tag>.pt          weights of a publish in flight (the state's intent)
    jobs/<job>/                                 trainer jobs (job.json, progress, checkpoints, result)
    trials/<cam>.pt                             the micro-profiler's best trial model of the window
What of it is kept, and for how long: controller/retention/.
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
        return self.windows_dir / window_tag(window) / camera

    @property
    def requests_dir(self) -> Path:
        return self.root / "requests"

    def checkpoint(self, camera: str, version: int) -> Path:
        return self.checkpoints_dir / camera / f"v{version}.pt"

    @property
    def windows_dir(self) -> Path:
        return self.root / "windows"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    @property
    def windows_log(self) -> Path:
        """Window records the state file no longer keeps, one JSON a line, oldest first."""
        return self.root / "windows.jsonl"

    @property
    def triton_log(self) -> Path:
        """The embedded tritonserver's stdout and stderr (controller/triton/server.py writes it)."""
        return self.triton_dir / "tritonserver.log"

    def pending_checkpoint(self, camera: str, tag: str) -> Path:
        """Weights staged for a publish whose version number Triton's repository has not given yet."""
        return self.checkpoints_dir / camera / f"pending-{tag}.pt"
