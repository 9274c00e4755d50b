"""The detector a video source's `detector:` section asks for."""

from __future__ import annotations

from sources.detection.background import BackgroundDetector
from sources.detection.config import BackgroundDetectorConfig, OnnxDetectorConfig, detector_model_name
from sources.detection.onnx_detector import OnnxDetector, OnnxRuntimeRunner, TritonRunner


def make_detector(config: BackgroundDetectorConfig | OnnxDetectorConfig, crop_size: int, camera: str,
                  triton_url: str | None) -> BackgroundDetector | OnnxDetector:
    """The default detector, or the user's ONNX one: called on Triton at `triton_url` (as the camera
    does) or, with no URL (check-source), run in-process from its file."""
    if isinstance(config, BackgroundDetectorConfig):
        return BackgroundDetector(config, crop_size)
    if triton_url:
        model = detector_model_name(camera)
        return OnnxDetector(config, crop_size, TritonRunner(triton_url, model, config.request_timeout_s),
                            where=f"{model} on {triton_url}")
    return OnnxDetector(config, crop_size, OnnxRuntimeRunner(config.model), where=str(config.model))
