"""Frame-source kinds: what a camera's `source:` section can be (see sources/registry.py).

Importing this package registers the built-in kinds, synthetic and folder.
"""

from sources import folder, synthetic  # noqa: F401  (registers the built-in kinds)
from sources.registry import (
    FrameSource,
    SourceContext,
    SourceError,
    SourceKind,
    register_source_kind,
    source_kind,
    source_kinds,
    unregister_source_kind,
)

__all__ = ["FrameSource", "SourceContext", "SourceError", "SourceKind", "register_source_kind", "source_kind",
           "source_kinds", "unregister_source_kind"]
