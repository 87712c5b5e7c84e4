"""A PixArt-α-shaped transformer with random weights, and PixArt-α's sampling loop, for speed at a real token count.

PixArt-α XL/2 at 512 px: width 1152 (16 heads of 72), 28 layers, 1024 image tokens, 120 caption tokens from a
4096-channel T5, CFG as one batch of 2, 20 DPM-Solver++ steps. ``BENCH_SHAPE`` keeps all of that except depth:
2 layers instead of 28. Depth first because it leaves each block's work proportions unchanged (self-attention
against linear layers depends on tokens / width); 2 rather than 1 because ToCa's layer factor (1.6 → 0.4 over
depth) then averages 1.0 as over 28 layers. Per-model work (the caption projection) weighs more in 2 layers:
``examples/ideal_by_depth.py`` gives pixart-alpha a FLOPs-ideal 1.96x at 2 layers and 1.92x at 28. One
generation is about 3.6 TFLOPs, roughly 21 s under plain torch.compile on 2 quiet cores.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DPMSolverMultistepScheduler, PixArtTransformer2DModel


@dataclass(frozen=True)
class PixArtShape:
    layers: int = 2
    heads: int = 16
    head_dim: int = 72
    latent: int = 64  # latent side; image tokens = (latent / 2)^2
    text_tokens: int = 120
    caption_channels: int = 4096
    steps: int = 20

    @property
    def width(self) -> int:
        return self.heads * self.head_dim

    @property
    def tokens(self) -> int:
        return (self.latent // 2) ** 2

    def describe(self) -> str:
        return (
            f"{self.layers} layers, width {self.width} ({self.heads} heads of {self.head_dim}), {self.tokens} image "
            f"tokens, {self.text_tokens} caption tokens ({self.caption_channels} channels), CFG batch 2, "
            f"{self.steps} DPM-Solver++ steps"
        )


BENCH_SHAPE = PixArtShape()
SMOKE_SHAPE = PixArtShape(layers=2, heads=2, head_dim=16, latent=16, text_tokens=8, caption_channels=32, steps=4)


def build_model(shape: PixArtShape) -> PixArtTransformer2DModel:
    """diffusers' PixArt-α transformer (adaLN-single, self- and cross-attention, GELU MLP, learned sigma),
    randomly initialised with a fixed seed."""
    torch.manual_seed(0)
    return PixArtTransformer2DModel(
        num_attention_heads=shape.heads,
        attention_head_dim=shape.head_dim,
        in_channels=4,
        out_channels=8,
        num_layers=shape.layers,
        cross_attention_dim=shape.width,
        sample_size=shape.latent,
        patch_size=2,
        caption_channels=shape.caption_channels,
        norm_type="ada_norm_single",
        use_additional_conditions=False,
    ).eval()


@torch.no_grad()
def generate(model: Callable, shape: PixArtShape, guidance_scale: float = 4.5) -> torch.Tensor:
    """PixArt-α's sampling loop (as in diffusers' PixArtAlphaPipeline) on latents, CFG batched [uncond, cond]."""
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, shape.latent, shape.latent, generator=generator)
    prompt = torch.randn(1, shape.text_tokens, shape.caption_channels, generator=generator)
    embeds = torch.cat([torch.zeros_like(prompt), prompt])
    mask = torch.ones(2, shape.text_tokens)
    mask[:, shape.text_tokens // 2 :] = 0  # padded caption, as real prompts are
    scheduler = DPMSolverMultistepScheduler()
    scheduler.set_timesteps(shape.steps)
    for t in scheduler.timesteps:
        out = model(
            torch.cat([latents] * 2),
            encoder_hidden_states=embeds,
            encoder_attention_mask=mask,
            timestep=t.expand(2),
            return_dict=False,
        )[0]
        uncond, cond = out.chunk(2)
        noise = (uncond + guidance_scale * (cond - uncond)).chunk(2, dim=1)[0]  # learned sigma
        latents = scheduler.step(noise, t, latents, return_dict=False)[0]
    return latents


def timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, list[float], torch.Tensor]:
    """(median seconds, every time, last result) of ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


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
