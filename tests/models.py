"""Tiny models for the tests: they live in the package's zoo (the coverage command uses them too)."""

from toca_fx.zoo.diffusers_models import CAPTION_CHANNELS, tiny_dit, tiny_flux, tiny_pixart, tiny_sd3
from toca_fx.zoo.hand import FusedQKVBlock, HandDiT, LiteralCrossAttention, ParallelBlock, SpatialTemporalDiT

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
