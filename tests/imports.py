"""What a package's modules import, read from their source (top level, in functions, under
TYPE_CHECKING): the tests that keep packages apart walk these."""

from __future__ import annotations

import ast

from tests.repo import REPO_ROOT


def imported_modules(package: str) -> dict[str, set[str]]:
    """Every module each file of `package` imports (top level, in functions, under TYPE_CHECKING)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(REPO_ROOT))] = names
    return found
