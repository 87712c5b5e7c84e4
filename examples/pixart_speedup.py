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
import time

import torch
from tabulate import tabulate
from torch._inductor.utils import fresh_cache

import toca_fx
from benchmarks.realistic import PixArtShape, build_model, generate, timed


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

    torch._dynamo.reset()
    compiled = torch.compile(model, dynamic=False)
    start = time.perf_counter()
    with fresh_cache():  # both compile cold, so that their times compare
        generate(compiled, shape)
    first_plain = time.perf_counter() - start
    plain_time, _, plain = timed(lambda: generate(compiled, shape), args.repeats)
    compile_time = first_plain - plain_time  # the first run less a steady-state run

    torch._dynamo.reset()
    toca = toca_fx.ToCa(args.preset, num_steps=args.steps, step_buckets=args.step_buckets)
    accelerated = torch.compile(model, backend=toca, dynamic=False)
    start = time.perf_counter()
    with fresh_cache():
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
