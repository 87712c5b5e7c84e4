"""Small helpers over Dynamo FX graphs shared by the passes."""

from __future__ import annotations

import re

import torch.fx as fx
from torch.fx.node import map_arg


def tensor_args(node: fx.Node) -> list[fx.Node]:
    """The input nodes of ``node`` (flattened over args and kwargs), tensors or tuples of them."""
    found: list[fx.Node] = []
    map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return list(dict.fromkeys(found))


class Ancestry:
    """Ancestor sets of every node as Python-int bitsets: cheap `a is an ancestor of b` queries."""

    def __init__(self, graph: fx.Graph):
        self.order = {node: i for i, node in enumerate(graph.nodes)}
        self.bits: dict[fx.Node, int] = {}
        for node in graph.nodes:
            bits = 0
            for arg in tensor_args(node):
                bits |= self.bits[arg] | (1 << self.order[arg])
            self.bits[node] = bits

    def is_ancestor(self, a: fx.Node, b: fx.Node) -> bool:
        return bool(self.bits[b] >> self.order[a] & 1)

    def between(self, source: fx.Node, sink: fx.Node) -> list[fx.Node]:
        """Nodes that depend on ``source`` and feed ``sink`` (sink included), in graph order."""
        mask = self.bits[sink] | (1 << self.order[sink])
        nodes = [n for n, i in self.order.items() if mask >> i & 1]
        return [n for n in nodes if n is not source and self.is_ancestor(source, n)]


_MODULE_PARTS = re.compile(r"\.__dict__\['_modules'\]\['([^']+)'\]|\['([^']+)'\]")


def module_path(node: fx.Node) -> str:
    """Dotted path of the innermost module that owns ``node`` (empty for the root)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    raw = list(stack.values())[-1][0]
    raw = re.sub(r"^L\['self'\]", "", raw)
    path = _MODULE_PARTS.sub(lambda m: "." + (m.group(1) or m.group(2)), raw)
    return re.sub(r"@\d+$", "", path).strip(".")


class ValueRecorder(fx.Interpreter):
    """Runs a graph and keeps every node's value by name."""

    def __init__(self, module: fx.GraphModule):
        super().__init__(module)
        self.values: dict[str, object] = {}

    def run_node(self, node):
        self.values[node.name] = value = super().run_node(node)
        return value
