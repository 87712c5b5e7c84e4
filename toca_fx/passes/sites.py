"""Site discovery: residual branches of the token stream, found from the graph alone.

A *site* is an ``add(x, branch(x))`` whose operands have the stream's shape (B, N, C) and where
``x`` is an ancestor of the branch, through at least one weighted op (linear, matmul, SDPA, conv).
Timestep-conditioned pointwise tails are peeled off so that the cache holds the pre-gate value::

    before:  x ─┬─ norm ─ mod ─ attn ─ out_proj ─ (/ 1.0) ─ (* gate_t) ─ add ─▶
                └────────────────────────────────────────────────────────┘
    site:    stream = x, output = out_proj (cached), tail = [/ 1.0, * gate_t], residual = add

Each site is then classified with the token analysis (:mod:`.tokens`):

* no token-mixing op before the output → ``partial`` (``mlp``, or ``cross_attention`` when an SDPA
  takes keys from outside the stream);
* a mixing op whose result flows straight to the output → ``reuse`` (``self_attention``, or
  ``joint_attention`` when the stream's tokens are joined with another stream's before it);
* a mixing op joined with token-local work before the output (FLUX single-stream) → ``partial``
  (``mixed``): the mixing op's rows come from an interior cache;
* anything the analysis cannot prove → ``reuse`` with the reason: only the output and the residual
  add need to be understood to serve the whole branch from its cache, as FORA does;
* a branch that draws random numbers → ``full``: reusing it would replay one step's draw.

A sequence-first stream, (N, B, C), is told by its batch axis (the size of the call's inputs' batch).

Joint attention computes one mixing core for two streams (SD3, FLUX double-stream)::

    x_img ─ qkv ─┐                       ┌─ [:N_img] ─ out ─▶ site(x_img)
                 cat ─ sdpa ─ split ─────┤
    x_txt ─ qkv ─┘                       └─ [N_img:] ─ out ─▶ site(x_txt)

The core is used outside each site's branch (by the other's). A reused site may share nodes with
other reused sites: at partial steps no one needs the core, and it is dropped. A token-local core
shared by two streams (CogVideoX's FF over cat(text, video), sliced back per stream) is partial
for the longer stream, whose fresh rows run with the shorter stream's current rows joined, and the
shorter stream's site is reused. Any other sharing makes the site recompute fully, with the reason.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx

from ..contract import SitePolicy
from ..lowering import example_value, is_module_state
from . import counters
from .graph import Ancestry, module_path
from .ops import MATMUL, SDPA, WEIGHTED_OPS, draws_random_numbers
from .prove import prove_at_token_count
from .tokens import TokenFlow, Unprovable, cast_source, constant_along, sdpa_operands, trace_tokens, value_args

_ADDS = {operator.add, torch.add, operator.iadd}
_PEELABLE = {operator.mul, torch.mul, operator.truediv, torch.div, operator.add, torch.add}


@dataclass
class Site:
    """One residual branch of one block, and what a partial step does with it."""

    block: str
    kind: str
    policy: SitePolicy
    reason: str
    stream: fx.Node
    output: fx.Node
    residual: fx.Node
    nodes: list[fx.Node] = field(default_factory=list)
    flow: TokenFlow | None = None
    interior: list[fx.Node] = field(default_factory=list)
    attention: fx.Node | None = None
    layer: int = 0
    token_axis: int = 1  # of the stream: 1 for (B, N, C), 0 for a sequence-first (N, B, C) stream
    fallback: bool = False  # reused because it could not be made partial, not because it mixes tokens

    @property
    def batch_axis(self) -> int:
        return 1 - self.token_axis

    @property
    def num_tokens(self) -> int:
        return example_value(self.stream).shape[self.token_axis]

    @property
    def name(self) -> str:
        return f"{self.block or '<root>'}:{self.kind}"

    def fresh_nodes(self) -> list[fx.Node]:
        """Branch nodes a partial step runs: what the output needs from the stream and interior caches."""
        needed, stack, inside = set(), [self.output], set(self.nodes)
        while stack:
            node = stack.pop()
            if node in needed or node in self.interior or node not in inside:
                continue
            needed.add(node)
            stack.extend(node.all_input_nodes)
        return [n for n in self.nodes if n in needed]


def _is_residual_add(node: fx.Node, ancestry: Ancestry) -> tuple[fx.Node, fx.Node] | None:
    if node.op != "call_function" or node.target not in _ADDS or len(node.args) != 2:
        return None
    a, b = node.args
    values = [example_value(a), example_value(b)]
    if not all(isinstance(v, torch.Tensor) for v in values):
        return None
    if values[0].shape != values[1].shape or values[0].dim() != 3:
        return None
    for stream, branch in ((a, b), (b, a)):
        # The branch may read its own cast of the stream: x + f(x.float()) written as x.float() + ...
        while stream is not None and not ancestry.is_ancestor(stream, branch):
            stream = cast_source(stream)
        if stream is not None:
            return stream, branch
    return None


def _peel_tail(branch: fx.Node, stream_nodes: set[fx.Node], token_axis: int) -> fx.Node:
    """Walk up pointwise ops whose other operand is independent of the stream and constant over tokens."""
    node = branch
    while node.op == "call_function" and node.target in _PEELABLE and len(node.users) == 1:
        inputs = [a for a in node.args if isinstance(a, fx.Node)]
        inner = [a for a in inputs if a in stream_nodes]
        if len(inner) != 1 or (node.target in (operator.truediv, torch.div) and node.args[0] is not inner[0]):
            break
        side = [a for a in inputs if a is not inner[0]]
        if not all(constant_along(a, token_axis, example_value(node).dim()) for a in side):
            break
        node = inner[0]
    return node


def _classify(site: Site) -> None:
    flow = trace_tokens(site.nodes, site.stream, site.token_axis)
    site.flow = flow
    if site.token_axis != 1 and example_value(site.output).shape != example_value(site.stream).shape:
        raise Unprovable("a sequence-first branch whose output is not laid out as its stream")
    attention = [n for n in site.nodes if n.target in SDPA]
    site.attention = attention[0] if attention else None
    tainted: set[fx.Node] = set()
    for node in site.nodes:
        if node in flow.mixing or any(a in tainted for a in value_args(node)):
            tainted.add(node)
    if site.output not in tainted:
        cross = any(sdpa_operands(n).key not in flow.dims for n in attention)
        site.kind, site.policy = ("cross_attention" if cross else "mlp"), SitePolicy.PARTIAL
        return
    # Interior caches: mixing results that meet token-local work before the output.
    joins = [
        n
        for n in site.nodes
        if n in tainted and n not in flow.mixing and any(a in flow.dims and a not in tainted for a in value_args(n))
    ]
    if not joins:
        site.kind, site.policy = _reused_kind(site), SitePolicy.REUSE
        site.reason = "token-mixing op feeds the output: reused whole at partial steps"
        return
    site.kind, site.policy = "mixed", SitePolicy.PARTIAL
    site.interior = list(dict.fromkeys(a for n in joins for a in value_args(n) if a in tainted))
    if site.token_axis != 1:
        raise Unprovable("a sequence-first stream whose token-mixing rows meet token-local work")
    if any(n in flow.extra_rows for n in site.interior):
        raise Unprovable("a token-mixing result joined with token-local work still carries another stream's rows")


def _reused_kind(site: Site) -> str:
    if site.flow.joined:
        return "joint_attention"
    # A mixing op proper (softmax or a matmul over tokens, SDPA), not only a value whose rows were
    # reshaped across frames (opaque, token axis None), as a convolution over the 2-D grid needs.
    flow = site.flow
    mixers = [n for n in flow.mixing if flow.dims[n] is not None or n.target in SDPA or n.target in MATMUL]
    return "self_attention" if mixers else "mlp"


def _prove(site: Site) -> None:
    if site.policy is not SitePolicy.PARTIAL:
        return
    for node in site.fresh_nodes():
        if node in site.flow.token_indexed:
            raise Unprovable(site.flow.token_indexed[node])
    prove_at_token_count(site, max(1, site.num_tokens // 2 - 1))


def _outside_uses(site: Site, tail: set[fx.Node]) -> list[tuple[fx.Node, fx.Node]]:
    """(node, user) pairs where a branch node other than the output feeds something outside the site."""
    inside = set(site.nodes) | tail
    return [(n, u) for n in site.nodes if n is not site.output for u in n.users if u not in inside]


def _settle_shared_nodes(sites: list[Site], outside: list[list[tuple[fx.Node, fx.Node]]]) -> None:
    """Sites whose nodes are also used outside them (a core shared by two streams' sites).

    A reused site may share nodes with anything: at partial steps the nodes others need still run.
    A partial site may share them with a site of a shorter (or equally long, later) stream, which is
    then reused: the partial step's fresh computation carries the shorter stream's rows anyway
    (CogVideoX's FF over text + video). A partial site with any other sharing is reused whole.
    """
    owner = {n: site for site in sites for n in site.nodes}

    demoted: set[int] = set()  # reused for a longer partner: the partner may stay partial

    def stray(index: int, site: Site) -> list[tuple[fx.Node, fx.Node]]:
        allowed = (SitePolicy.REUSE, SitePolicy.PARTIAL) if index in demoted else (SitePolicy.REUSE,)
        return [(n, u) for n, u in outside[index] if owner.get(u) is None or owner[u].policy not in allowed]

    def key(site: Site) -> tuple[int, int]:
        return (site.num_tokens, -sites.index(site))

    settled = False
    while not settled:
        settled = True
        for index, site in enumerate(sites):
            others = [owner.get(u) for _, u in stray(index, site)]
            if site.policy is not SitePolicy.PARTIAL or not others or None in others:
                continue
            if all(o.policy is SitePolicy.PARTIAL and key(o) > key(site) for o in others):
                longer = max(others, key=key)
                site.policy, site.fallback = SitePolicy.REUSE, True
                demoted.add(index)
                site.reason = f"shares its token-local core with {longer.name}: reused whole at partial steps"
                settled = False
    for index, site in enumerate(sites):
        left = stray(index, site) if site.policy is SitePolicy.PARTIAL else []
        if left:
            node, user = left[0]
            site.policy, site.fallback = SitePolicy.REUSE, True
            site.reason = f"{node.name} is also used outside the branch by {user.name}: reused whole at partial steps"


def _token_axis(stream: fx.Node, batch_sizes: set[int]) -> int:
    """1 for a (B, N, C) stream; 0 for a sequence-first (N, B, C) one, told by which axis has the
    batch size of the call's inputs (ambiguous sizes keep the usual layout)."""
    first, second = example_value(stream).shape[:2]
    return 0 if second in batch_sizes and first not in batch_sizes else 1


def _batch_sizes(graph: fx.Graph) -> set[int]:
    """Leading sizes of the call's own tensor inputs of 3 or more dims (latents, text embeddings)."""
    inputs = [n for n in graph.nodes if n.op == "placeholder" and not is_module_state(n)]
    return {v.shape[0] for v in map(example_value, inputs) if isinstance(v, torch.Tensor) and v.dim() >= 3}


@dataclass(frozen=True)
class Placement:
    """Where a graph sits in its model: the path of the module whose forward it is (a block's, when
    graph breaks make Dynamo compile each block on its own), and the model's stacked blocks (the
    elements of its outermost module lists) in order: the layers of the layer factor."""

    prefix: str = ""
    stacked: tuple[str, ...] = ()


UNPLACED = Placement()  # a graph seen alone: layers numbered by its own blocks


def stacked_blocks(model: torch.nn.Module) -> tuple[str, ...]:
    """The elements of ``model``'s module lists that lie in no other such element, in order."""
    blocks: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList):
            for i in range(len(module)):
                block = f"{name}.{i}" if name else str(i)
                if not any(block.startswith(outer + ".") for outer in blocks):
                    blocks.append(block)
    return tuple(blocks)


def _number_layers(sites: list[Site], placement: Placement) -> int:
    """Name each site's block within the model, give it the layer of its stacked block (a site in
    none takes the nearest before it, else after it) and return the number of layers."""
    for site in sites:
        site.block = ".".join(part for part in (placement.prefix, site.block) if part)
    if not placement.stacked:
        blocks = list(dict.fromkeys(s.block for s in sites))
        for site in sites:
            site.layer = blocks.index(site.block)
        return len(blocks)
    order = {block: i for i, block in enumerate(placement.stacked)}
    layers = [
        next((order[b] for b in order if site.block == b or site.block.startswith(b + ".")), None) for site in sites
    ]
    known = [layer for layer in layers if layer is not None] or [0]
    previous = known[0]
    for site, layer in zip(sites, layers):
        previous = site.layer = previous if layer is None else layer
    return len(placement.stacked)


def find_sites(graph: fx.Graph, placement: Placement = UNPLACED) -> tuple[list[Site], int]:
    """All residual sites of ``graph`` in graph order, classified, and the number of layers."""
    ancestry = Ancestry(graph)
    batch_sizes = _batch_sizes(graph)
    sites: list[Site] = []
    outside: list[list[tuple[fx.Node, fx.Node]]] = []
    for node in graph.nodes:
        found = _is_residual_add(node, ancestry)
        if found is None:
            continue
        stream, branch = found
        nodes = ancestry.between(stream, branch)
        if not any(n.target in WEIGHTED_OPS for n in nodes):
            continue
        token_axis = _token_axis(stream, batch_sizes)
        output = _peel_tail(branch, set(nodes), token_axis)
        tail = {n for n in nodes if ancestry.is_ancestor(output, n)} | {node}
        site = Site(
            block=module_path(node),
            kind="mlp",
            policy=SitePolicy.PARTIAL,
            reason="",
            stream=stream,
            output=output,
            residual=node,
            nodes=[n for n in nodes if n not in tail],
            token_axis=token_axis,
        )
        try:
            _classify(site)
            _prove(site)
        except Unprovable as exc:  # not proven token-local: reused whole at partial steps, as FORA does
            site.policy, site.reason = (
                SitePolicy.REUSE,
                f"not proven token-local ({exc}): reused whole at partial steps",
            )
            site.kind = "self_attention" if any(n.target in SDPA for n in site.nodes) else "mlp"
            site.interior, site.fallback = [], True
        if any(draws_random_numbers(n) for n in site.nodes):  # reuse would replay one step's draw at another
            site.policy, site.reason = SitePolicy.FULL, "draws random numbers: recomputed at every step, never reused"
        sites.append(site)
        outside.append(_outside_uses(site, tail))
    kept = {id(site) for site in _innermost(sites)}
    outside = [uses for site, uses in zip(sites, outside) if id(site) in kept]
    sites = [site for site in sites if id(site) in kept]
    _settle_shared_nodes(sites, outside)
    counters.update(f"site:{s.kind}:{s.policy}" for s in sites)
    return sites, _number_layers(sites, placement)


def _innermost(sites: list[Site]) -> list[Site]:
    """Resolve nested sites, where one branch contains another site's residual add.

    Usually the inner add is the stream of later blocks, and the inner site is kept. When the inner
    add's result is used only inside the outer branch (AuraFlow: ``x + ff(norm(x + attn(x)))``), it
    is no stream: the outer site is kept, and classification makes it a mixed site.
    """
    residuals = {s.residual for s in sites}
    dropped: set[fx.Node] = set()  # residual adds of the dropped sites
    for outer in sites:
        inner = [n for n in outer.nodes if n in residuals]
        inside = set(outer.nodes)
        if inner and all(u in inside for add in inner for u in add.users):
            dropped.update(inner)
        elif inner:
            dropped.add(outer.residual)
    return [s for s in sites if s.residual not in dropped]
