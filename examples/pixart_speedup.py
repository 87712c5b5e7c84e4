"""toca_fx on a PixArt-α-shaped transformer: eager vs plain torch.compile vs toca_fx, side by side.

The model is diffusers' ``PixArtTransformer2DModel`` with PixArt-α's block structure (adaLN-single,
self-attention, cross-attention to a 120-token caption, GELU MLP, learned sigma), with random
weights and scaled down in depth and width so that 2 CPU cores run it in a few minutes. The
sampler is PixArt-α's: 20 DPM-Solver++ steps, classifier-free guidance as one batch of 2.

    python examples/pixart_speedup.py                       # a few minutes on 2 cores
    python examples/pixart_speedup.py --layers 28 --heads 16 --head-dim 72   # PixArt-α XL/2 size

Prints wall time, speedup over plain torch.compile, FLOPs and the relative error of the final
latents against the uncached eager run from the same noise.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DPMSolverMultistepScheduler, PixArtTransformer2DModel
from tabulate import tabulate

import toca_fx
from toca_fx.lowering import fresh_inductor_cache, reset_dynamo


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--latent", type=int, default=64, help="latent side; tokens = (latent / 2)^2")
    parser.add_argument("--text-tokens", type=int, default=120)
    parser.add_argument("--caption-channels", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--preset", default="pixart-alpha", choices=toca_fx.PRESETS)
    parser.add_argument("--step-buckets", type=int, default=0, help="partial-step ratio levels; 0 = exact per step")
    parser.add_argument("--repeats", type=int, default=1, help="timed generations per method (median)")
    args = parser.parse_args()

    shape = PixArtShape(
        layers=args.layers,
        heads=args.heads,
        head_dim=args.head_dim,
        latent=args.latent,
        text_tokens=args.text_tokens,
        caption_channels=args.caption_channels,
        steps=args.steps,
    )
    model = build_model(shape)
    print(f"PixArt-α-shaped model: {shape.describe()}, {torch.get_num_threads()} threads")

    eager_time, _, reference = timed(lambda: generate(model, shape), args.repeats)

    reset_dynamo()
    compiled = torch.compile(model, dynamic=False)
    start = time.perf_counter()
    with fresh_inductor_cache():  # both compile cold, so that their times compare
        generate(compiled, shape)
    first_plain = time.perf_counter() - start
    plain_time, _, plain = timed(lambda: generate(compiled, shape), args.repeats)
    compile_time = first_plain - plain_time  # the first run less a steady-state run

    reset_dynamo()
    toca = toca_fx.ToCa(args.preset, num_steps=args.steps, step_buckets=args.step_buckets)
    accelerated = torch.compile(model, backend=toca, dynamic=False)
    start = time.perf_counter()
    with fresh_inductor_cache():
        generate(accelerated, shape)
    first_toca = time.perf_counter() - start
    before = dict(toca.stats)
    toca_time, _, cached = timed(lambda: (toca.reset(), generate(accelerated, shape))[1], args.repeats)
    toca_compile = first_toca - toca_time
    full, partial = (toca.stats[k] - before[k] for k in ("full_steps", "partial_steps"))

    uncached_flops, toca_flops = toca.predicted_flops(args.steps)

    def rel_error(x):
        return (x - reference).norm().item() / reference.norm().item()

    rows = [
        ["eager", None, eager_time, plain_time / eager_time, uncached_flops, 1.0, rel_error(reference)],
        ["torch.compile (inductor)", compile_time, plain_time, 1.0, uncached_flops, 1.0, rel_error(plain)],
        [
            f"toca_fx {args.preset}",
            toca_compile,
            toca_time,
            plain_time / toca_time,
            toca_flops,
            uncached_flops / toca_flops,
            rel_error(cached),
        ],
    ]
    headers = [
        "method",
        "compile s",
        "generation s",
        "speedup vs compile",
        "FLOPs",
        "FLOPs-ideal speedup",
        "rel. error vs eager",
    ]
    print(tabulate(rows, headers=headers, floatfmt=(None, ".1f", ".2f", ".2f", ".3g", ".2f", ".2e"), missingval="-"))
    print(
        f"per generation: {full // args.repeats} full and {partial // args.repeats} partial steps; "
        f"measured/ideal = {(plain_time / toca_time) / (uncached_flops / toca_flops):.2f}"
    )


if __name__ == "__main__":
    main()
