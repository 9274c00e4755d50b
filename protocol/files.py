"""A camera's files under the deployment's data directory (the camera client itself writes none: it
reads its directive over HTTP and keeps its results in its own directory, camera/results.py).

    cameras/<cam>/spool/w<W>/chunk-<N>.npz      sampled frames, unlabelled (for golden labelling)
    cameras/<cam>/results/w<W>.json             a camera client's result, written there by older versions
                                                (retention still clears them away)
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

    def spool_root(self, camera: str) -> Path:
        return self.camera_dir(camera) / "spool"

    def spool_dir(self, camera: str, window: int) -> Path:
        return self.spool_root(camera) / window_tag(window)

    def result_file(self, camera: str, window: int) -> Path:
        return self.camera_dir(camera) / "results" / f"{window_tag(window)}.json"

    def quarantine_dir(self, camera: str) -> Path:
        """Where a camera's corrupt files go, each under its path relative to the data directory."""
        return self.root / "quarantine" / camera
