"""A user's ONNX classifier converted to torch for retraining (onnx2torch), cut into backbone and head.

The head is the graph's trailing fully connected layers (Gemm -> nn.Linear, with ReLUs between them);
everything before them is the backbone, whose output (the features) the head-only retraining caches.
A graph that does not end in a fully connected layer cannot be retrained head-first and is refused.
"""

from __future__ import annotations

import onnx
from torch import fx, nn

from common.onnx_graph import resolve_identities


class ConversionError(ValueError):
    """The ONNX graph cannot be converted or cut into backbone and head; the message names the file."""


def convert(source: bytes, where: str) -> fx.GraphModule:
    from onnx2torch import convert as onnx2torch_convert

    try:
        model = resolve_identities(onnx.load_from_string(source))
        return onnx2torch_convert(model)
    except Exception as exc:  # onnx and onnx2torch raise many unrelated types
        raise ConversionError(f"{where}: cannot convert the ONNX model to torch for retraining "
                              f"({type(exc).__name__}: {exc})") from exc


def split_onnx_classifier(source: bytes, where: str) -> tuple[fx.GraphModule, nn.Sequential]:
    """(backbone, head) of the ONNX graph `source` (`where` names it in errors)."""
    graph = convert(source, where)
    output = next(n for n in graph.graph.nodes if n.op == "output")
    last = output.args[0]
    if not isinstance(last, fx.Node):
        raise ConversionError(f"{where}: the model has several outputs; a classifier has one (the logits)")
    chain = _head_chain(graph, last)
    if not chain:
        raise ConversionError(f"{where}: the model does not end in a fully connected layer (Gemm), which "
                              "retraining replaces and trains first; export it with a Linear last layer")
    features = chain[0].args[0]
    backbone = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in graph.graph.nodes:
        env[node] = backbone.node_copy(node, lambda n: env[n])
        if node is features:
            break
    backbone.output(env[features])
    module = fx.GraphModule(graph, backbone)
    module.graph.eliminate_dead_code()
    module.recompile()
    head = nn.Sequential(*[graph.get_submodule(str(node.target)) for node in chain])
    return module, head


def _head_chain(graph: fx.GraphModule, last: fx.Node) -> list[fx.Node]:
    """The trailing Linear (ReLU Linear)* modules feeding `last`, in order; [] when `last` is no Linear."""
    def module(node: fx.Node, kind: type[nn.Module]) -> bool:
        return (node.op == "call_module" and isinstance(graph.get_submodule(str(node.target)), kind)
                and len(node.args) == 1 and isinstance(node.args[0], fx.Node) and len(node.users) == 1)

    chain: list[fx.Node] = []
    node = last
    while module(node, nn.Linear):
        chain.insert(0, node)
        relu = node.args[0]
        assert isinstance(relu, fx.Node)
        if not (module(relu, nn.ReLU) and isinstance(relu.args[0], fx.Node) and module(relu.args[0], nn.Linear)):
            break
        chain.insert(0, relu)
        node = relu.args[0]
    return chain
