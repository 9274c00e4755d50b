"""Where a deployment keeps its state on disk (all under the config's data directory).

    state.json                                  the controller's persisted state
    models/                                     bootstrap cache (initial edge models, golden model)
    model_repository/                           Triton model repository (embedded mode default)
    triton/                                     embedded server runtime, log, server.json
    cameras/<cam>/directive.json                what the controller tells the camera (stride, window clock)
    cameras/<cam>/spool/w<W>/chunk-<N>.npz      sampled frames, unlabelled (for golden labelling)
    cameras/<cam>/results/w<W>.json             the camera's measured accuracy for a window
    cameras/<cam>/live.json                     rolling client counters (requests, failures)
    windows/w<W>/<cam>/{train,test}.npz         golden-labelled data of a closed window
    checkpoints/<cam>/v<N>.pt                   the PyTorch checkpoint behind each served version
    jobs/<job>/                                 trainer jobs (job.json, progress, checkpoints, result)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def window_tag(window: int) -> str:
    return f"w{window:06d}"


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def triton_dir(self) -> Path:
        return self.root / "triton"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    def camera_dir(self, camera: str) -> Path:
        return self.root / "cameras" / camera

    def directive_file(self, camera: str) -> Path:
        return self.camera_dir(camera) / "directive.json"

    def spool_root(self, camera: str) -> Path:
        return self.camera_dir(camera) / "spool"

    def spool_dir(self, camera: str, window: int) -> Path:
        return self.spool_root(camera) / window_tag(window)

    def result_file(self, camera: str, window: int) -> Path:
        return self.camera_dir(camera) / "results" / f"{window_tag(window)}.json"

    def live_file(self, camera: str) -> Path:
        return self.camera_dir(camera) / "live.json"

    def window_dir(self, window: int, camera: str) -> Path:
        return self.root / "windows" / window_tag(window) / camera

    def checkpoint(self, camera: str, version: int) -> Path:
        return self.root / "checkpoints" / camera / f"v{version}.pt"
