"""ONNX graph rewrites shared by the trainer (retraining a user's ONNX model) and the ekya_onnx backend."""

from __future__ import annotations

import onnx


def resolve_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """Point consumers of Identity(initializer) at the initializer itself: torch's exporter shares equal
    weights that way, and onnx2torch looks weights up among the initializers by name."""
    inits = {i.name for i in model.graph.initializer}
    alias = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity" and n.input[0] in inits}
    keep = [n for n in model.graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for node in keep:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model
