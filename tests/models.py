"""Tiny models for the tests: they live in the package's zoo (the coverage command uses them too)."""

from zoo.diffusers_models import CAPTION_CHANNELS, tiny_dit, tiny_flux, tiny_pixart, tiny_sd3
from zoo.hand import FusedQKVBlock, HandDiT, LiteralCrossAttention, ParallelBlock, SpatialTemporalDiT

__all__ = [
    "CAPTION_CHANNELS",
    "tiny_dit",
    "tiny_flux",
    "tiny_pixart",
    "tiny_sd3",
    "FusedQKVBlock",
    "HandDiT",
    "LiteralCrossAttention",
    "ParallelBlock",
    "SpatialTemporalDiT",
]
