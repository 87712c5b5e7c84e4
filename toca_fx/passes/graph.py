"""Small helpers over Dynamo FX graphs shared by the passes."""

from __future__ import annotations

import operator
import re

import torch
import torch.fx as fx
from torch.fx.node import map_arg

from ..lowering import collective_name


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
    # The root: L['self'], or a hook's saved bound method, L['function_reference'].forward.__self__
    # (diffusers' context-parallel hooks wrap the model's forward).
    raw = re.sub(r"^L\['\w+'\](?:\.\w+\.__self__)*", "", raw)
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


# Ops whose output may share storage with their first input.
_VIEW_METHODS = {
    *("view", "view_as", "reshape", "reshape_as", "transpose", "permute", "unsqueeze", "squeeze", "expand"),
    *("expand_as", "narrow", "select", "flatten", "unflatten", "unbind", "split", "chunk", "contiguous", "detach"),
    *("to", "type_as", "float", "half", "bfloat16", "as_strided", "t", "movedim", "swapaxes", "__getitem__"),
}
_VIEW_FUNCTIONS = {operator.getitem, torch.reshape, torch.transpose, torch.permute, torch.unsqueeze, torch.squeeze}
_VIEW_FUNCTIONS |= {torch.flatten, torch.unflatten, torch.narrow, torch.select, torch.split, torch.chunk, torch.unbind}


def storage_root(node: fx.Node) -> fx.Node:
    """The node whose tensor ``node`` may be a view of (itself if it is no view)."""
    while True:
        view = (node.op == "call_method" and node.target in _VIEW_METHODS) or (
            node.op == "call_function" and node.target in _VIEW_FUNCTIONS
        )
        if not view or not node.args or not isinstance(node.args[0], fx.Node):
            return node
        node = node.args[0]


def writes_in_place(node: fx.Node) -> bool:
    """``x.add_()``, ``x.copy_(y)``, ``x[...] = y``, ``F.relu(x, inplace=True)``: an op that changes its
    first input. Such a node has no users, yet it must never be dropped as dead code."""
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    in_place = (node.op in ("call_method", "call_function") and name.endswith("_") and not name.startswith("__")) or (
        node.op == "call_function" and (node.target is operator.setitem or node.kwargs.get("inplace") is True)
    )
    return in_place and bool(node.args) and isinstance(node.args[0], fx.Node)


def is_impure(node: fx.Node) -> bool:
    """What dead-code elimination must keep: FX's impure nodes, and writes in place.

    A functional collective and its ``wait_tensor`` (impure to FX) are not kept for their own sake:
    every rank runs the same variant at the same step (the schedule is a function of the step index
    alone), so a collective whose result no one needs is dropped on every rank alike. This is what
    makes a reused branch's all-to-alls disappear from partial steps."""
    return (node.is_impure() and collective_name(node.target) is None) or writes_in_place(node)


def mutated_storage(graph: fx.Graph) -> set[fx.Node]:
    """The roots (see :func:`storage_root`) of every tensor an op of ``graph`` writes in place."""
    return {storage_root(node.args[0]) for node in graph.nodes if writes_in_place(node)}
