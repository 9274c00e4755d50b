"""The camera client and the controller share only protocol/ (and the trainer's data types): neither
imports the other, statically, anywhere in its package."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.imports import imported_modules


def offending(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{file}: {name}" for file, names in imported_modules(package).items() for name in sorted(names)
            if name.split(".")[0] in forbidden]


@pytest.mark.parametrize(("package", "forbidden"), [
    ("camera", ("controller",)),
    ("controller", ("camera",)),
    ("protocol", ("controller", "camera", "sources")),
    ("sources", ("controller", "camera")),
    ("common", ("controller", "camera", "trainer", "protocol", "sources")),
])
def test_package_never_imports(package: str, forbidden: tuple[str, ...]) -> None:
    assert imported_modules(package), f"no modules found under {package}/"
    assert offending(package, forbidden) == []


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    # The check above is only as good as its walk: a deferred import must count too.
    assert "controller.triton.client" in set().union(*imported_modules("controller").values())
    assert "camera.triton" in imported_modules("camera")["camera/client.py"]
