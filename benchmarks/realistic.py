"""The main example's PixArt-α-shaped transformer (random weights) and sampling loop at a real token count.

PixArt-α XL/2 at 512 px: width 1152 (16 heads of 72), 28 layers, 1024 image tokens, 120 caption tokens from a
4096-channel T5, CFG as one batch of 2, 20 DPM-Solver++ steps. ``BENCH_SHAPE`` keeps all of that except depth:
2 layers instead of 28. Depth first because it leaves each block's work proportions unchanged (self-attention
against linear layers depends on tokens / width); 2 rather than 1 because ToCa's layer factor (1.6 → 0.4 over
depth) then averages 1.0 as over 28 layers. Per-model work (the caption projection) weighs more in 2 layers:
``python -m benchmarks.ideal_by_depth`` gives pixart-alpha a FLOPs-ideal 1.96x at 2 layers and 1.92x at 28. One
generation is about 3.6 TFLOPs, roughly 21 s under plain torch.compile on 2 quiet cores.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from examples.pixart_speedup import PixArtShape, build_model, generate

BENCH_SHAPE = PixArtShape()
SMOKE_SHAPE = PixArtShape(layers=2, heads=2, head_dim=16, latent=16, text_tokens=8, caption_channels=32, steps=4)


class RealisticWorkload:
    """The PixArt-α-shaped model as a benchmark workload: one fixed generation (noise and prompt from seed 1)."""

    def __init__(self, shape: PixArtShape):
        self.shape = shape
        self.name = "PixArt-α-shaped"
        self.model = build_model(shape)
        self.num_steps = shape.steps
        self.batches = [None]

    def sample(self, fn: Callable, batch=None) -> torch.Tensor:
        return generate(fn, self.shape)
