"""Frame-source kinds: what a camera's `source:` section can be (see sources/registry.py).

Importing this package registers the built-in kinds: synthetic, folder and video.
"""

# The built-in kinds register themselves at import, in this order (the order errors list them in).
from sources import synthetic  # noqa: F401

# isort: split
from sources import folder  # noqa: F401

# isort: split
from sources import video  # noqa: F401

# isort: split
from sources.registry import (
    FrameSource,
    SourceContext,
    SourceError,
    SourceKind,
    StreamingFrameSource,
    register_source_kind,
    source_kind,
    source_kinds,
    unregister_source_kind,
)

__all__ = ["FrameSource", "SourceContext", "SourceError", "SourceKind", "StreamingFrameSource", "register_source_kind", "source_kind",
           "source_kinds", "unregister_source_kind"]
