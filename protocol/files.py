"""The files through which the controller and a camera talk, under the deployment's data directory.

    cameras/<cam>/directive.json                what the controller tells the camera (stride, window clock)
    cameras/<cam>/spool/w<W>/chunk-<N>.npz      sampled frames, unlabelled (for golden labelling)
    cameras/<cam>/results/w<W>.json             the camera's measured accuracy for a window
    cameras/<cam>/live.json                     rolling client counters (requests, failures)
    triton/server.json                          the embedded Triton's address, written by the controller
    quarantine/<cam>/<relative path>            a corrupt file of the camera's, moved aside (+ `.reason`)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def window_tag(window: int) -> str:
    return f"w{window:06d}"


@dataclass(frozen=True)
class CameraFiles:
    root: Path  # the deployment's data directory

    @property
    def triton_dir(self) -> Path:
        return self.root / "triton"

    @property
    def triton_server_file(self) -> Path:
        """JSON with the embedded server's `address` and `grpc_port` (absent for an external Triton)."""
        return self.triton_dir / "server.json"

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

    def quarantine_dir(self, camera: str) -> Path:
        """Where a camera's corrupt files go, each under its path relative to the data directory."""
        return self.root / "quarantine" / camera
