"""Analyse one Dynamo graph region from its structure alone: its sites, the attention each block
could score tokens with, each stream's 2-D token grid, the timestep input and the step-invariant
context work. Nothing here reads the config; ``choices.py`` decides what to do with it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx

from ..contract import SitePolicy
from ..lowering import collective_name, example_value
from .context import NO_CONTEXT, ContextWork, find_context
from .graph import Ancestry, mutated_storage
from .ops import draws_random_numbers
from .sites import UNPLACED, Placement, Site, find_sites
from .tokens import sdpa_operands

ATTENTION_SCORES = ("attention", "cross_entropy")  # s1 (attention received), s2 (cross-attention entropy)


@dataclass
class RegionAnalysis:
    sites: list[Site]
    # layer -> score kind -> an SDPA whose map scores every token of the layer's partial sites
    score_attention: dict[int, dict[str, fx.Node]]
    grids: dict[int, tuple[int, int]]  # site index -> the (h, w) token grid of its stream, where one is found
    timestep: int | None  # placeholder index of the timestep input, if the region has one
    batch: int
    num_layers: int = 1  # the model's depth, for the layer factor
    mutated: frozenset[fx.Node] = frozenset()  # tensors the graph writes in place (their storage roots)
    context: ContextWork = NO_CONTEXT  # step-invariant values partial steps take from the full step
    # SDPA -> (ranks, process group), for attentions over every rank's tokens (context parallelism)
    attention_ranks: dict[fx.Node, tuple[int, str]] = field(default_factory=dict)
    group: str | None = None  # the process group of the graph's collectives (context parallelism)

    random: bool = False  # whether the graph draws random numbers

    @property
    def mutates_inputs(self) -> bool:
        """Whether running the graph changes its inputs (a buffer or cache written in place)."""
        return any(node.op == "placeholder" for node in self.mutated)

    @property
    def cacheable(self) -> bool:
        return any(s.policy is not SitePolicy.FULL for s in self.sites)

    @property
    def partial_layers(self) -> list[int]:
        return sorted({s.layer for s in self.sites if s.policy is SitePolicy.PARTIAL})


def _score_length(kind: str, attention: fx.Node) -> int:
    """Tokens a score from this SDPA covers: keys for s1 (attention received), queries for s2."""
    ops = sdpa_operands(attention)
    return example_value(ops.key if kind == "attention" else ops.query).shape[-2]


def score_ranks(site: Site) -> tuple[int, str] | None:
    """(ranks, process group) where the site's attention runs over every rank's tokens (Ulysses):
    its s1 score then sums the ranks' head groups and keeps each rank's own keys."""
    ranks = site.flow.gathered.get(sdpa_operands(site.attention).key)
    return (ranks, site.flow.group) if ranks else None


def _score_attention(block_sites: list[Site]) -> dict[str, fx.Node]:
    """The block's SDPAs by the score they can give. A score must have one entry per token of every
    partial site in the block: the SDPA of a joint attention covers two streams' tokens, and a
    block with streams of different lengths has none. Under Ulysses an s1 map covers every rank's
    keys (one rank's share each); s2, an entropy of the head-mean map, is not a sum over head groups."""
    tokens = {s.num_tokens for s in block_sites if s.policy is SitePolicy.PARTIAL}
    found: dict[str, fx.Node] = {}
    for site in block_sites:
        if site.attention is None or site.policy is SitePolicy.FULL:
            continue
        keys_from_stream = sdpa_operands(site.attention).key in site.flow.dims
        kind = "attention" if keys_from_stream else "cross_entropy"
        ranks = score_ranks(site) if keys_from_stream else None
        if sdpa_operands(site.attention).query in site.flow.gathered and not ranks:
            continue
        if tokens == {_score_length(kind, site.attention) // (ranks[0] if ranks else 1)}:
            found[kind] = site.attention
    return found


def _token_grids(graph: fx.Graph, sites: list[Site]) -> dict[int, tuple[int, int]]:
    """The (h, w) token grid of each site's stream: the last 4-D ancestor whose h*w is the site's
    token count (a patchify)."""
    ancestry = Ancestry(graph)
    images = [n for n in graph.nodes if isinstance(example_value(n), torch.Tensor) and example_value(n).dim() == 4]
    grids = {}
    for index, site in enumerate(sites):
        found = [
            tuple(example_value(n).shape[-2:])
            for n in images
            if example_value(n).shape[-2] * example_value(n).shape[-1] == site.num_tokens
            and ancestry.is_ancestor(n, site.stream)
        ]
        if found:
            grids[index] = found[-1]
    return grids


def _collective_group(graph: fx.Graph) -> str | None:
    """The process group (its name: a functional collective's last argument) of the graph's first collective."""
    names = (collective_name(n.target) for n in graph.nodes)
    return next((n.args[-1] for n, name in zip(graph.nodes, names) if name not in (None, "wait_tensor")), None)


def _timestep_input(graph: fx.Graph) -> int | None:
    """Index of the placeholder that feeds a sinusoidal embedding (sin/cos): the diffusion timestep."""
    ancestry = Ancestry(graph)
    trig = [n for n in graph.nodes if n.op == "call_function" and n.target in (torch.sin, torch.cos)]
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for index, node in enumerate(placeholders):
        value = example_value(node)
        if isinstance(value, torch.Tensor) and value.dim() <= 1 and any(ancestry.is_ancestor(node, t) for t in trig):
            return index
    return None


def analyse(gm: fx.GraphModule, placement: Placement = UNPLACED) -> RegionAnalysis:
    """The structure of one graph; ``placement``: where the graph sits in its model."""
    sites, num_layers = find_sites(gm.graph, placement)
    layers = sorted({s.layer for s in sites if s.policy is SitePolicy.PARTIAL})
    score_attention = {layer: _score_attention([s for s in sites if s.layer == layer]) for layer in layers}
    batch = example_value(sites[0].stream).shape[sites[0].batch_axis] if sites else 1
    timestep = _timestep_input(gm.graph)
    mutated = frozenset(mutated_storage(gm.graph))
    random = any(draws_random_numbers(n) for n in gm.graph.nodes)
    grids = _token_grids(gm.graph, sites)
    attention_ranks = {s.attention: score_ranks(s) for s in sites if s.attention is not None and score_ranks(s)}
    analysis = RegionAnalysis(
        sites, score_attention, grids, timestep, batch, num_layers=num_layers, mutated=mutated, random=random
    )
    analysis.attention_ranks, analysis.group = attention_ranks, _collective_group(gm.graph)
    if analysis.cacheable:
        analysis.context = find_context(gm, sites, timestep)
    return analysis
