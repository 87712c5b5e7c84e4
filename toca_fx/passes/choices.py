"""The config-dependent choices for an analysed region: each block's score source, each site's
spatial grid, and whether CFG halves share their selection.

    analyse(gm) ──▶ RegionAnalysis ──┬──▶ choose(analysis, config) ──▶ Choices ──▶ rewrite, runtime
                                     └── (the "auto" preset reads the sites first, then chooses)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.fx as fx

from ..config import ToCaConfig
from .analysis import ATTENTION_SCORES, RegionAnalysis


@dataclass(frozen=True)
class ScoreSource:
    """Where a block's token score comes from at full steps: an SDPA node and the score kind."""

    kind: str  # "attention" (s1), "cross_entropy" (s2) or "random"
    attention: fx.Node | None
    ranks: tuple[int, str] | None = None  # (ranks, process group) where the attention spans every rank's tokens


@dataclass(frozen=True)
class Choices:
    config: ToCaConfig
    scores: dict[int, ScoreSource]  # layer -> source, for layers with a partial site
    grids: dict[int, tuple[int, int]]  # site index -> token grid for the spatial bonus (s4)
    cfg_shared: bool
    notes: tuple[str, ...]  # what was chosen other than the config asked, and why
    grid_note: str


def _score_source(config: ToCaConfig, found: dict[str, fx.Node], ranks: dict) -> tuple[ScoreSource, str]:
    """The configured score where the block has it; else the other attention score, then random."""
    if config.score == "random":
        return ScoreSource("random", None), ""
    if config.score in found:
        return ScoreSource(config.score, found[config.score], ranks.get(found[config.score])), ""
    for kind in ATTENTION_SCORES:
        if kind in found:
            note = f"{config.score} score unavailable in this block: using {kind}"
            return ScoreSource(kind, found[kind], ranks.get(found[kind])), note
    return ScoreSource("random", None), f"{config.score} score unavailable in this block: using random"


def _grids(analysis: RegionAnalysis, config: ToCaConfig) -> tuple[dict[int, tuple[int, int]], str]:
    """Token grids that divide into the config's g x g cells; the others turn the spatial bonus off."""
    if config.spatial_weight == 0:
        return {}, "spatial bonus (s4) disabled by config"
    cell, grids, notes = config.spatial_grid, {}, set()
    for index, site in enumerate(analysis.sites):
        grid = analysis.grids.get(index)
        if grid is None:
            notes.add(f"{site.num_tokens}-token stream: no 2-D token grid, spatial bonus (s4) off")
        elif grid[0] % cell or grid[1] % cell:
            notes.add(f"token grid {grid} not divisible into {cell}x{cell} cells: spatial bonus (s4) off")
        else:
            grids[index] = grid
            notes.add(f"token grid {grid[0]}x{grid[1]}")
    return grids, "; ".join(sorted(notes))


def choose(analysis: RegionAnalysis, config: ToCaConfig) -> Choices:
    notes: list[str] = []
    scores: dict[int, ScoreSource] = {}
    for layer in analysis.partial_layers:
        scores[layer], note = _score_source(config, analysis.score_attention[layer], analysis.attention_ranks)
        if note:
            notes.append(f"layer {layer}: {note}")
    grids, grid_note = _grids(analysis, config)
    cfg_shared = config.cfg_shared and analysis.batch % 2 == 0
    if config.cfg_shared and not cfg_shared:
        notes.append(f"batch {analysis.batch} is odd: CFG halves select tokens separately")
    return Choices(config, scores, grids, cfg_shared, tuple(notes), grid_note)
