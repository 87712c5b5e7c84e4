"""Step-invariant context work: values a partial step takes from the last full step.

Work that reads neither the token stream's inputs nor the timestep, only inputs that stay the same
through a generation (a prompt's text embedding, the parameters), gives the same values at every
step. A FULL step outputs the last such values before they meet step-dependent work; a PARTIAL
step reads them instead of recomputing them, and the work feeding only them drops out. The runtime
reuses a value only while the inputs it depends on are the very tensors, unmodified, that the full
step saw; otherwise the step recomputes it.

    text ─ caption_proj ─ to_k ─ view ─▶ k ─┐            FULL:    outputs ("context", j) = k
    x ─ gather ─ norm ─ to_q ─ view ─▶ q ───┴─ sdpa ─▶  PARTIAL: k = placeholder ("context", j);
                                                                 caption_proj and to_k are gone

Only values with FLOPs upstream are carried: cheap ones (a reshaped mask) are recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from ..lowering import example_value
from . import counters
from .flops import node_flops
from .graph import Ancestry, tensor_args
from .ops import draws_random_numbers
from .sites import Site


@dataclass(frozen=True)
class ContextWork:
    values: tuple[fx.Node, ...]  # carried from FULL to PARTIAL steps, as ("context", j)
    inputs: tuple[tuple[int, ...], ...]  # per value, the placeholder indices it depends on
    dropped: frozenset[fx.Node]  # nodes a PARTIAL step no longer runs when it reuses every value
    dropped_flops: int


NO_CONTEXT = ContextWork((), (), frozenset(), 0)


def find_context(gm: fx.GraphModule, sites: list[Site], timestep: int | None) -> ContextWork:
    """The step-invariant values of a region whose step-dependent inputs are the timestep and
    whatever the sites' token streams are computed from."""
    if not sites:
        return NO_CONTEXT
    graph = gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    ancestry = Ancestry(graph)
    dependent = _stream_inputs(graph, sites)
    if timestep is not None:
        dependent.add(placeholders[timestep])
    invariant: list[fx.Node] = []
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if draws_random_numbers(node) or any(arg in dependent for arg in tensor_args(node)):
            dependent.add(node)
        else:
            invariant.append(node)
    flops = node_flops(gm, only=set(invariant))  # invariant nodes read only invariant nodes
    costly: set[fx.Node] = set()
    for node in invariant:
        if flops[node.name] > 0 or any(arg in costly for arg in tensor_args(node)):
            costly.add(node)
    invariant_set = set(invariant)
    values = tuple(
        n
        for n in invariant
        if n in costly
        and isinstance(example_value(n), torch.Tensor)
        and any(user not in invariant_set for user in n.users)
    )
    dropped: set[fx.Node] = set(values)
    for node in reversed(invariant):
        if node.users and all(user in dropped for user in node.users):
            dropped.add(node)
    inputs = tuple(tuple(i for i, p in enumerate(placeholders) if ancestry.is_ancestor(p, v)) for v in values)
    counters["context:values"] += len(values)
    return ContextWork(values, inputs, frozenset(dropped), sum(flops[n.name] for n in dropped))


def _stream_inputs(graph: fx.Graph, sites: list[Site]) -> set[fx.Node]:
    """Placeholders the token streams are computed from, not counting what reaches a stream through
    a site's output (a deeper block's stream depends on the text through cross-attention, yet the
    text is no token input)."""
    barriers = {s.output for s in sites}
    sources: dict[fx.Node, set[fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "placeholder":
            sources[node] = {node}
        else:
            sources[node] = set().union(*(sources[a] for a in tensor_args(node) if a not in barriers))
    return set().union(*(sources[s.stream] for s in sites))
