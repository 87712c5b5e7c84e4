"""Analyse one Dynamo graph region: its sites, score sources, token grid, timestep input and step-invariant
context work."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from ..config import ToCaConfig
from .context import NO_CONTEXT, ContextWork, find_context
from .graph import Ancestry, example_value
from .sites import Site, find_sites
from .tokens import sdpa_operands


@dataclass(frozen=True)
class ScoreSource:
    """Where a block's token score comes from at full steps: an SDPA node and the score kind."""

    kind: str  # "attention" (s1), "cross_entropy" (s2) or "random"
    attention: fx.Node | None


@dataclass
class RegionAnalysis:
    sites: list[Site]
    scores: dict[int, ScoreSource]  # layer -> source, for layers with a partial site
    grids: dict[int, tuple[int, int]]  # site index -> token grid for the spatial bonus (s4)
    grid_note: str
    timestep: int | None  # placeholder index of the timestep input, if the region has one
    cfg_shared: bool
    notes: list[str]
    context: ContextWork = NO_CONTEXT  # step-invariant values partial steps take from the full step

    @property
    def cacheable(self) -> bool:
        return any(s.policy != "full" for s in self.sites)


def _score_length(kind: str, attention: fx.Node) -> int:
    """Tokens a score from this SDPA covers: keys for s1 (attention received), queries for s2."""
    ops = sdpa_operands(attention)
    return example_value(ops.key if kind == "attention" else ops.query).shape[-2]


def _score_source(config: ToCaConfig, block_sites: list[Site]) -> tuple[ScoreSource, str]:
    """Pick the block's score source; fall back to the other attention score, then random.

    A score must have one entry per token of every partial site in the block: the SDPA of a joint
    attention covers two streams' tokens, and a block with streams of different lengths has none.
    """
    tokens = {s.num_tokens for s in block_sites if s.policy == "partial"}
    by_kind = {"attention": None, "cross_entropy": None}
    for site in block_sites:
        if site.attention is None or site.policy == "full":
            continue
        keys_from_stream = sdpa_operands(site.attention).key in site.flow.dims
        kind = "attention" if keys_from_stream else "cross_entropy"
        if tokens == {_score_length(kind, site.attention)}:
            by_kind[kind] = site.attention
    if config.score == "random":
        return ScoreSource("random", None), ""
    if by_kind[config.score] is not None:
        return ScoreSource(config.score, by_kind[config.score]), ""
    for kind, node in by_kind.items():
        if node is not None:
            return ScoreSource(kind, node), f"{config.score} score unavailable in this block: using {kind}"
    return ScoreSource("random", None), f"{config.score} score unavailable in this block: using random"


def _token_grids(graph: fx.Graph, sites: list[Site], cell: int) -> tuple[dict[int, tuple[int, int]], str]:
    """The (h, w) token grid of each site's stream: the last 4-D ancestor whose h*w is the
    site's token count (a patchify). Sites without one, or not divisible into cells, get none."""
    ancestry = Ancestry(graph)
    images = [n for n in graph.nodes if isinstance(example_value(n), torch.Tensor) and example_value(n).dim() == 4]
    grids, notes = {}, set()
    for index, site in enumerate(sites):
        found = [
            tuple(example_value(n).shape[-2:])
            for n in images
            if example_value(n).shape[-2] * example_value(n).shape[-1] == site.num_tokens
            and ancestry.is_ancestor(n, site.stream)
        ]
        if not found:
            notes.add(f"{site.num_tokens}-token stream: no 2-D token grid, spatial bonus (s4) off")
        elif found[-1][0] % cell or found[-1][1] % cell:
            notes.add(f"token grid {found[-1]} not divisible into {cell}x{cell} cells: spatial bonus (s4) off")
        else:
            grids[index] = found[-1]
            notes.add(f"token grid {found[-1][0]}x{found[-1][1]}")
    return grids, "; ".join(sorted(notes))


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


def analyse(gm: fx.GraphModule, config: ToCaConfig) -> RegionAnalysis:
    sites = find_sites(gm.graph)
    notes: list[str] = []
    scores: dict[int, ScoreSource] = {}
    for layer in sorted({s.layer for s in sites if s.policy == "partial"}):
        source, note = _score_source(config, [s for s in sites if s.layer == layer])
        scores[layer] = source
        if note:
            notes.append(f"layer {layer}: {note}")
    grids, grid_note = _token_grids(gm.graph, sites, config.spatial_grid)
    if config.spatial_weight == 0:
        grids, grid_note = {}, "spatial bonus (s4) disabled by config"
    batch = example_value(sites[0].stream).shape[0] if sites else 1
    cfg_shared = config.cfg_shared and batch % 2 == 0
    if config.cfg_shared and not cfg_shared:
        notes.append(f"batch {batch} is odd: CFG halves select tokens separately")
    analysis = RegionAnalysis(sites, scores, grids, grid_note, _timestep_input(gm.graph), cfg_shared, notes)
    if analysis.cacheable:
        analysis.context = find_context(gm, sites, analysis.timestep)
    return analysis
