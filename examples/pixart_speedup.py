"""toca_fx on a PixArt-α-shaped transformer: eager vs plain torch.compile vs toca_fx, side by side.

The model is diffusers' ``PixArtTransformer2DModel`` with PixArt-α's block structure (adaLN-single,
self-attention, cross-attention to a 120-token caption, GELU MLP, learned sigma), with random
weights and scaled down in depth and width so that 2 CPU cores run it in about a minute. The
sampler is PixArt-α's: 20 DPM-Solver++ steps, classifier-free guidance as one batch of 2.

    python examples/pixart_speedup.py                       # ~1 minute on 2 cores
    python examples/pixart_speedup.py --layers 28 --heads 16 --head-dim 72   # PixArt-α XL/2 size

Prints wall time, speedup over plain torch.compile, FLOPs and the relative error of the final
latents against the uncached eager run from the same noise.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import DPMSolverMultistepScheduler, PixArtTransformer2DModel
from tabulate import tabulate

import toca_fx


def build_model(args) -> PixArtTransformer2DModel:
    torch.manual_seed(0)
    return PixArtTransformer2DModel(
        num_attention_heads=args.heads,
        attention_head_dim=args.head_dim,
        in_channels=4,
        out_channels=8,
        num_layers=args.layers,
        cross_attention_dim=args.heads * args.head_dim,
        sample_size=args.latent,
        patch_size=2,
        caption_channels=args.caption_channels,
        norm_type="ada_norm_single",
        use_additional_conditions=False,
    ).eval()


@torch.no_grad()
def generate(model, args, guidance_scale=4.5) -> torch.Tensor:
    """PixArt-α's sampling loop (as in diffusers' PixArtAlphaPipeline) on latents, CFG batched."""
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, args.latent, args.latent, generator=generator)
    prompt = torch.randn(1, args.text_tokens, args.caption_channels, generator=generator)
    embeds = torch.cat([torch.zeros_like(prompt), prompt])  # uncond, cond
    mask = torch.ones(2, args.text_tokens)
    mask[:, args.text_tokens // 2 :] = 0  # padded caption, as real prompts are
    scheduler = DPMSolverMultistepScheduler()
    scheduler.set_timesteps(args.steps)
    for t in scheduler.timesteps:
        latent_input = torch.cat([latents] * 2)
        out = model(
            latent_input,
            encoder_hidden_states=embeds,
            encoder_attention_mask=mask,
            timestep=t.expand(2),
            return_dict=False,
        )[0]
        uncond, cond = out.chunk(2)
        noise = (uncond + guidance_scale * (cond - uncond)).chunk(2, dim=1)[0]  # learned sigma
        latents = scheduler.step(noise, t, latents, return_dict=False)[0]
    return latents


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


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

    model = build_model(args)
    tokens = (args.latent // 2) ** 2
    print(
        f"PixArt-α-shaped model: {args.layers} layers, width {args.heads * args.head_dim}, {tokens} image tokens, "
        f"{args.text_tokens} text tokens, CFG batch 2, {args.steps} DPM-Solver steps, {torch.get_num_threads()} threads"
    )

    eager_time, reference = timed(lambda: generate(model, args), args.repeats)

    torch._dynamo.reset()
    compiled = torch.compile(model, dynamic=False)
    start = time.perf_counter()
    generate(compiled, args)
    compile_time = time.perf_counter() - start - eager_time  # first run minus one run's work (approx.)
    plain_time, plain = timed(lambda: generate(compiled, args), args.repeats)

    torch._dynamo.reset()
    toca = toca_fx.ToCa(args.preset, num_steps=args.steps, step_buckets=args.step_buckets)
    accelerated = torch.compile(model, backend=toca, dynamic=False)
    start = time.perf_counter()
    generate(accelerated, args)
    toca_compile = time.perf_counter() - start - eager_time
    before = dict(toca.stats)
    toca_time, cached = timed(lambda: (toca.reset(), generate(accelerated, args))[1], args.repeats)
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
        "compile s (approx.)",
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
