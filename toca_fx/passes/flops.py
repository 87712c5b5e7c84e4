"""FLOPs per node, counted by ``torch.utils.flop_counter`` over fake tensors (no real compute), and the counter
every FLOPs figure of the project uses."""

from __future__ import annotations

import torch
import torch.fx as fx
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_flop_count

from ..lowering import CPU_ATTENTION_KERNEL, FLEX_ATTENTION, example_value, fake_mode, is_higher_order_op


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """A quiet ``FlopCounterMode`` that also counts attention on CPU. torch 2.13 has no formula for the kernel
    ``scaled_dot_product_attention`` runs on CPU and counts it as 0 FLOPs (pytorch/pytorch#195460, fixed upstream
    by #195801); it gets torch's own SDPA formula here."""
    missing = {} if CPU_ATTENTION_KERNEL in flop_registry else {CPU_ATTENTION_KERNEL: _attention_flops}
    return FlopCounterMode(display=False, custom_mapping=missing)


class _Counting(fx.Interpreter):
    def __init__(self, module, counter: FlopCounterMode, only: set[fx.Node] | None):
        super().__init__(module)
        self.counter, self.only = counter, only
        self.flops: dict[str, int] = {}

    def run_node(self, node):
        if self.only is not None and node.op not in ("placeholder", "output") and node not in self.only:
            return None
        if is_higher_order_op(node.target):  # its subgraphs do not run here: shapes from Dynamo, attention's formula
            self.flops[node.name] = _higher_order_flops(node)
            return _fakes_like(example_value(node))
        before = self.counter.get_total_flops()
        try:
            result = super().run_node(node)
        except Exception:  # e.g. functorch's vmap internals of a mask builder: Dynamo's shapes, 0 FLOPs
            if example_value(node) is None:
                raise
            self.flops[node.name] = 0
            return _fakes_like(example_value(node))
        self.flops[node.name] = self.counter.get_total_flops() - before
        return result


def _higher_order_flops(node: fx.Node) -> int:
    """flex_attention counts as attention (torch's SDPA formula); other higher-order ops as 0."""
    if node.target is not FLEX_ATTENTION:
        return 0
    q, k, v = (example_value(a) for a in node.args[:3])
    return sdpa_flop_count(q.shape, k.shape, v.shape)


def _fakes_like(value):
    """Fresh fake tensors (in the active fake mode) shaped like Dynamo's recorded ``value``."""
    if isinstance(value, (tuple, list)):
        return type(value)(_fakes_like(v) for v in value)
    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device=value.device)
    return value


def node_flops(module: fx.GraphModule, inputs: list | None = None, only: set[fx.Node] | None = None) -> dict[str, int]:
    """FLOPs of every node of ``module`` (or of the nodes ``only``, which must not read any other
    node), by node name, for inputs shaped like ``inputs`` (default: the example values Dynamo
    recorded on the placeholders). A node this fake-tensor interpreter cannot run outside Dynamo
    (a higher-order op's subgraphs, functorch internals) takes the shapes Dynamo recorded and counts 0,
    except flex_attention, which counts as attention."""
    if inputs is None:
        inputs = [example_value(n) for n in module.graph.nodes if n.op == "placeholder"]
    mode = fake_mode()
    with mode:
        inputs = [
            torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
            if isinstance(t, torch.Tensor)
            else t
            for t in inputs
        ]
    counter = flop_counter()
    interpreter = _Counting(module, counter, only)
    with mode, counter, torch.no_grad():
        interpreter.run(*inputs)
    return interpreter.flops


def site_costs(module: fx.GraphModule, sites, reused: frozenset = frozenset()) -> tuple[int, list[int], list[int]]:
    """The region's FLOPs, and per site the FLOPs that scale with its tokens and the FLOPs of
    context work only that site needs and a partial step does not already take from the full step
    (``reused``). A node shared by several sites' branches (a joint attention core) is split between
    them in proportion to their token counts, so that it is counted once."""
    flops = node_flops(module)
    tokens_sharing: dict[fx.Node, int] = {}
    for site in sites:
        for node in site.nodes:
            tokens_sharing[node] = tokens_sharing.get(node, 0) + site.num_tokens
    token, context = [], []
    for site in sites:
        branch = set(site.nodes)
        exclusive: set[fx.Node] = set()
        for node in reversed(module.graph.nodes):
            if (
                node.op != "placeholder"
                and node not in branch
                and node.users
                and all(u in branch or u in exclusive for u in node.users)
            ):
                exclusive.add(node)
        token.append(sum(flops[n.name] * site.num_tokens / tokens_sharing[n] for n in branch))
        context.append(sum(flops[n.name] for n in exclusive - reused))
    return sum(flops.values()), token, context
