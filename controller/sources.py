"""Frame sources for camera clients, built from a deployment config's camera entry.

synthetic: the drifting generator in trainer.streams.synthetic (ground truth known).
folder:    a manifest of the user's own crops (trainer.streams.folder), replayed at the camera's fps.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.streams.base import WindowData
from trainer.streams.synthetic import CameraStreamSpec, generate_window


@dataclass
class SyntheticFrameSource:
    spec: CameraStreamSpec

    @property
    def fps(self) -> float:
        return self.spec.fps

    def _spec(self, window_seconds: float) -> CameraStreamSpec:
        if window_seconds == self.spec.window_seconds:
            return self.spec
        return self.spec.model_copy(update={"window_seconds": window_seconds})

    def frames_per_window(self, window_seconds: float) -> int:
        return self._spec(window_seconds).frames_per_window

    def window(self, window: int, window_seconds: float) -> WindowData:
        return generate_window(self._spec(window_seconds), window)


def stream_spec(config, camera_name: str) -> CameraStreamSpec:
    """The synthetic stream spec of a configured camera (the same one bootstrap trains on)."""
    camera = config.camera(camera_name)
    source = camera.source
    if source.kind != "synthetic":
        raise ValueError(f"camera {camera_name!r} is not synthetic")
    return CameraStreamSpec(
        name=camera.name,
        seed=source.seed,
        crop_size=config.edge_model.input_size,
        fps=source.fps,
        window_seconds=config.window_seconds,
        objects_per_frame=source.objects_per_frame,
        drift_speed=source.drift.speed,
        drift_magnitude=source.drift.magnitude,
        start_window=source.drift.start_window,
    )


def frame_source(config, camera_name: str):
    camera = config.camera(camera_name)
    if camera.source.kind == "synthetic":
        return SyntheticFrameSource(stream_spec(config, camera_name))
    if camera.source.kind == "folder":
        from controller.folder_source import FolderFrameSource

        return FolderFrameSource.from_manifest(camera.source.manifest, camera.name, camera.source.fps)
    raise ValueError(f"camera {camera_name!r}: unsupported source kind {camera.source.kind!r}")
