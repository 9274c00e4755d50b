"""The reconcile core decides; it does no I/O of its own: no ML framework, no Triton client, no processes.
Everything it acts on comes in through its ports (controller/reconcile/ports.py)."""

from __future__ import annotations

from tests.imports import imported_modules

EDGES = ("torch", "torchvision", "onnx", "onnxruntime", "tritonclient", "subprocess", "controller.triton",
         "controller.runtime", "controller.trainers.launcher", "controller.gpu.mps", "trainer.models",
         "trainer.fit", "trainer.worker", "apscheduler")


def test_the_reconcile_core_imports_no_edge() -> None:
    modules = imported_modules("controller/reconcile")
    assert len(modules) >= 10
    found = [f"{file}: {name}" for file, names in modules.items() for name in sorted(names)
             if any(name == edge or name.startswith(edge + ".") for edge in EDGES)]
    assert found == []


def test_the_runtime_is_where_the_edges_are() -> None:
    # the check above is only as good as its list: the real ports do import the edges it forbids
    names = set().union(*imported_modules("controller/runtime").values())
    assert {"controller.triton.client", "trainer.models"} <= names
