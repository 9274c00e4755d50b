"""The files of a capture wrapper's version directory (ModelSpec.wrapped): the BLS model and the capture
module it imports, both copied in so that a stock Triton image needs nothing but the repository."""

from __future__ import annotations

from pathlib import Path

WRAPPER_MODEL_FILE = "model.py"
CAPTURE_MODULE_FILE = "ekya_capture.py"  # protocol/capture.py, under a name no image has already


def wrapper_files() -> dict[str, bytes]:
    """File name -> content, for every version directory of a wrapped model."""
    import protocol.capture
    import triton_config

    model = Path(triton_config.__file__).parent / "capture_wrapper" / "model.py"
    return {WRAPPER_MODEL_FILE: model.read_bytes(), CAPTURE_MODULE_FILE: Path(protocol.capture.__file__).read_bytes()}
