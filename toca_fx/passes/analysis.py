"""Analyse one Dynamo graph region: its sites, score sources, token grid and timestep input."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from ..config import ToCaConfig
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
    grid: tuple[int, int] | None  # token grid for the spatial bonus (s4), None when unknown
    grid_note: str
    timestep: int | None  # placeholder index of the timestep input, if the region has one
    cfg_shared: bool
    notes: list[str]

    @property
    def cacheable(self) -> bool:
        return any(s.policy != "full" for s in self.sites)


def _score_source(config: ToCaConfig, block_sites: list[Site]) -> tuple[ScoreSource, str]:
    """Pick the block's score source; fall back to the other attention score, then random."""
    by_kind = {"attention": None, "cross_entropy": None}
    for site in block_sites:
        if site.attention is None or site.policy == "full":
            continue
        keys_from_stream = sdpa_operands(site.attention).key in site.flow.dims
        by_kind["attention" if keys_from_stream else "cross_entropy"] = site.attention
    if config.score == "random":
        return ScoreSource("random", None), ""
    if by_kind[config.score] is not None:
        return ScoreSource(config.score, by_kind[config.score]), ""
    for kind, node in by_kind.items():
        if node is not None:
            return ScoreSource(kind, node), f"{config.score} score unavailable in this block: using {kind}"
    return ScoreSource("random", None), f"{config.score} score unavailable in this block: using random"


def _token_grid(graph: fx.Graph, site: Site, cell: int) -> tuple[tuple[int, int] | None, str]:
    """The (h, w) grid of the stream's tokens: the last 4-D ancestor whose h*w equals N (a patchify)."""
    ancestry = Ancestry(graph)
    tokens = site.num_tokens
    grid = None
    for node in graph.nodes:
        value = example_value(node)
        if (isinstance(value, torch.Tensor) and value.dim() == 4 and value.shape[-2] * value.shape[-1] == tokens
                and ancestry.is_ancestor(node, site.stream)):
            grid = tuple(value.shape[-2:])
    if grid is None:
        return None, "no 2-D token grid found: spatial bonus (s4) off"
    if grid[0] % cell or grid[1] % cell:
        return None, f"token grid {grid} not divisible into {cell}x{cell} cells: spatial bonus (s4) off"
    return grid, f"token grid {grid[0]}x{grid[1]}"


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
    grid, grid_note = (None, "no sites") if not sites else _token_grid(gm.graph, sites[0], config.spatial_grid)
    if config.spatial_weight == 0:
        grid, grid_note = None, "spatial bonus (s4) disabled by config"
    batch = example_value(sites[0].stream).shape[0] if sites else 1
    cfg_shared = config.cfg_shared and batch % 2 == 0
    if config.cfg_shared and not cfg_shared:
        notes.append(f"batch {batch} is odd: CFG halves select tokens separately")
    return RegionAnalysis(sites, scores, grid, grid_note, _timestep_input(gm.graph), cfg_shared, notes)
