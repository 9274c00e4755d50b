"""Object crops from full frames: a detector that needs no weights (background subtraction, contours to
boxes), an IoU tracker that keeps an object's id across frames, and crops cut at the edge model's size."""

from sources.detection.config import BackgroundDetectorConfig, DetectorConfig, OnnxDetectorConfig

__all__ = ["BackgroundDetectorConfig", "DetectorConfig", "OnnxDetectorConfig"]
