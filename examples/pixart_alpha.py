"""ToCa on PixArt-α with the paper's settings: PixArt-XL-2-512x512, 20 DPM-Solver++ steps,
guidance 4.5, the ``pixart-alpha`` preset (N=3, 70% of tokens cached at partial steps).

    python examples/pixart_alpha.py                      # from the hub; a GPU makes it quick
    python examples/pixart_alpha.py --model ./pixart     # a folder written by save_pretrained

Generates uncached, then with ToCa from the same noise (after one compiling warm-up generation),
prints the conversion report, times and speedup, and saves both images.
"""

from __future__ import annotations

import argparse

from diffusers import DPMSolverMultistepScheduler

from toca_fx.generate import compare_and_show, load_pipeline, pipeline_inputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="PixArt-alpha/PixArt-XL-2-512x512", help="hub id or local folder")
    parser.add_argument("--prompt", default="a small cactus with a happy face in the Sahara desert")
    parser.add_argument("--steps", type=int, default=20, help="DPM-Solver++ steps (paper: 20)")
    parser.add_argument("--compiler", default="inductor", choices=("inductor", "eager", "aot_eager"))
    parser.add_argument("--out", default="pixart_alpha_images", help="folder for the images")
    args = parser.parse_args(argv)

    pipe = load_pipeline(args.model)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)  # the paper's sampler
    inputs = pipeline_inputs(pipe, args.prompt, steps=args.steps, guidance_scale=4.5)
    compare_and_show(pipe, inputs, "pixart-alpha", args.out, compiler=args.compiler)


if __name__ == "__main__":
    main()
