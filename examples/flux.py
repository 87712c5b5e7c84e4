"""ToCa on FLUX.1 with the paper's settings: FLUX.1-dev, 50 steps, guidance 3.5, 1024x1024. The
preset is chosen from the transformer's structure (joint attention and parallel single-stream
blocks select ``flux`` where that preset is installed); ``--preset`` overrides it.

    python examples/flux.py                              # from the hub (gated: log in first); needs a GPU
    python examples/flux.py --model black-forest-labs/FLUX.1-schnell --steps 4 --guidance-scale 0
    python examples/flux.py --model ./flux --height 256 --width 256

Generates uncached, then with ToCa from the same noise (after one compiling warm-up generation),
prints the conversion report, times and speedup, and saves both images.
"""

from __future__ import annotations

import argparse

import toca_fx
from toca_fx.generate import compare_and_show, load_pipeline, pipeline_inputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="black-forest-labs/FLUX.1-dev", help="hub id or local folder")
    parser.add_argument("--prompt", default="a tiny astronaut hatching from an egg on the moon")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (paper: 50)")
    parser.add_argument("--guidance-scale", type=float, default=3.5, help="distilled guidance (dev: 3.5)")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--preset", choices=toca_fx.PRESETS, help="default: chosen from the structure")
    parser.add_argument("--compiler", default="inductor", choices=("inductor", "eager", "aot_eager"))
    parser.add_argument("--out", default="flux_images", help="folder for the images")
    args = parser.parse_args(argv)

    pipe = load_pipeline(args.model)
    inputs = pipeline_inputs(
        pipe, args.prompt, steps=args.steps, guidance_scale=args.guidance_scale, height=args.height, width=args.width
    )
    compare_and_show(pipe, inputs, args.preset, args.out, compiler=args.compiler)


if __name__ == "__main__":
    main()
