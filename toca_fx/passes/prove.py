"""Prove a partial site's rewrite by fake-tensor propagation at another token count.

The token analysis says which axis carries tokens and where literal token counts sit in shape
arguments. This pass takes it at its word, rebuilds the branch as a PARTIAL step would run it
(stream and interior caches at ``n`` tokens, literal counts rewritten to ``n``) and propagates
fake tensors through it::

    x[B, n, C] ─ norm ─ linear ─ reshape(B, n, H, D) ─ ... ─▶ y[B, n, C]     n != N

It fails, and the site falls back to full recompute, when an op rejects the shapes or a node's
token axis does not have ``n`` entries.
"""

from __future__ import annotations

import torch
import torch.fx as fx

from ..lowering import example_value, fake_mode
from .graph import ValueRecorder
from .tokens import Unprovable, fresh_copy


def _fake_like(mode, value: torch.Tensor, dim: int | None = None, tokens: int = 0):
    shape = list(value.shape)
    if dim is not None:
        shape[dim] = tokens
    with mode:
        return torch.empty(shape, dtype=value.dtype, device=value.device)


def prove_at_token_count(site, tokens: int) -> None:
    """Raise :class:`Unprovable` unless the site's fresh-token branch is shape-correct at ``tokens``."""
    flow = site.flow
    mode = fake_mode()
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    inputs = []

    def placeholder(node: fx.Node, dim: int | None) -> fx.Node:
        env[node] = graph.placeholder(node.name)
        inputs.append(_fake_like(mode, example_value(node), dim, tokens))
        return env[node]

    placeholder(site.stream, flow.dims[site.stream])
    for node in site.interior:
        placeholder(node, flow.dims[node])

    def take_rows(value: fx.Node, at: int, node: fx.Node) -> fx.Node:
        return graph.call_method("narrow", (value, at, 0, tokens))

    fresh = site.fresh_nodes()
    for node in fresh:
        for arg in node.all_input_nodes:
            if arg not in env and arg not in fresh:
                placeholder(arg, None)
        env[node] = fresh_copy(graph, node, flow, env.__getitem__, tokens, take_rows)
    graph.output(env[site.output])
    interpreter = ValueRecorder(fx.GraphModule(torch.nn.Module(), graph))
    try:
        with mode:
            interpreter.run(*inputs)
    except Exception as exc:  # any shape error means the rewrite is not proven
        raise Unprovable(f"fake-tensor check at {tokens} tokens failed: {type(exc).__name__}: {exc}") from exc
    for node in fresh:
        value = interpreter.values[node.name]
        if node in flow.flat:  # 1-D: its tokens are checked where it is reshaped back
            continue
        # joined values also carry another stream's rows; gathered ones every rank's tokens
        expected = tokens * flow.gathered.get(node, 1) + flow.extra_rows.get(node, 0)
        if isinstance(value, torch.Tensor) and value.shape[flow.dims[node]] != expected:
            raise Unprovable(
                f"{node.name} has {value.shape[flow.dims[node]]} tokens, not {expected}, at its token axis"
            )
