"""The deployment's own model files, checked at start-up (`ekya run` and `ekya bootstrap` both call
`check_user_models` before anything is served or trained): a golden model given as ONNX and an initial
edge model given as weights or ONNX. A file that does not fit stops the start with a UserModelError that
names the file and the mismatch (missing, unreadable, not ONNX, input shape, class count).

The edge model is made into our checkpoint once per file content and settings (in the bootstrap cache,
`<data.dir>/models/`), so a restart neither converts nor checks it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from controller.config import DeploymentConfig
from sources.detection.config import OnnxDetectorConfig
from trainer.user_models import (
    OnnxClassifier,
    OnnxDetectorModel,
    UserModelError,
    check_class_count,
    inspect_classifier,
    inspect_detector,
)

log = logging.getLogger("controller")

__all__ = ["UserModelError", "UserModels", "check_user_models", "file_digest"]


@dataclass(frozen=True)
class UserModels:
    golden: OnnxClassifier | None  # the golden model's file, inspected (None: bootstrapped)
    edge_checkpoint: Path | None  # every camera's initial model (None: bootstrapped)
    detectors: dict[str, OnnxDetectorModel] = field(default_factory=dict)  # camera -> its ONNX detector


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_user_models(config: DeploymentConfig, cache_dir: Path | None = None) -> UserModels:
    """Check the config's model files (raises UserModelError) and make the edge one our checkpoint."""
    golden = None
    g = config.golden_model
    if g.onnx is not None:
        assert g.classes is not None  # (the config's validation)
        golden = inspect_classifier(Path(g.onnx), "golden_model.onnx", layout=g.input_layout, input_size=g.input_size)
        check_class_count(golden.classes, tuple(g.classes), f"golden_model.onnx {g.onnx}", "golden_model.classes")
    detectors = {}
    for index, camera in enumerate(config.cameras):
        detector = getattr(camera.source, "detector", None)
        if isinstance(detector, OnnxDetectorConfig):
            detectors[camera.name] = inspect_detector(Path(detector.model), f"cameras[{index}].source.detector.model",
                                                      input_size=detector.input_size)
    edge = None
    if config.edge_model.from_file is not None:
        edge = _edge_checkpoint(config, cache_dir or Path(config.data.dir) / "models")
    return UserModels(golden, edge, detectors)


def _edge_checkpoint(config: DeploymentConfig, cache_dir: Path) -> Path:
    from trainer.models import save_model
    from trainer.user_models import edge_from_onnx, edge_from_weights

    e = config.edge_model
    path = Path(e.from_file)  # type: ignore[arg-type]
    key = "weights" if e.weights is not None else "onnx"
    if not path.is_file():
        raise UserModelError(f"edge_model.{key} {path}: file not found")
    settings = {"file": file_digest(path), "kind": key, "family": e.family, "input_size": e.input_size,
                "hidden": e.hidden, "classes": config.classes}
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    checkpoint = cache_dir / f"user-edge-{tag}.pt"
    if checkpoint.is_file():
        return checkpoint
    log.info("checking and converting the edge model %s", path)
    classes = tuple(config.classes)
    if e.weights is not None:
        model = edge_from_weights(path, e.family, classes, e.input_size, e.hidden)
    else:
        model = edge_from_onnx(path, classes, e.input_size, e.hidden)
    cache_dir.mkdir(parents=True, exist_ok=True)
    return save_model(model, checkpoint, role="edge", source=str(path))
