"""ToCa on DiT-XL/2 with the paper's settings: DiT-XL-2-256, 50 DDIM steps, guidance 1.5, the
``dit`` preset (N=3, attention-based token scores, ratio rising over the steps).

    python examples/dit_xl.py                            # from the hub; a GPU makes it quick
    python examples/dit_xl.py --model ./dit --classes "golden retriever"

Generates uncached, then with ToCa from the same noise (after one compiling warm-up generation),
prints the conversion report, times and speedup, and saves both sets of images.
"""

from __future__ import annotations

import argparse

from diffusers import DDIMScheduler

from toca_fx.generate import compare_and_show, load_pipeline, pipeline_inputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="facebook/DiT-XL-2-256", help="hub id or local folder")
    parser.add_argument("--classes", default="golden retriever, red panda", help="ImageNet class names or ids")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (paper: 50)")
    parser.add_argument("--compiler", default="inductor", choices=("inductor", "eager", "aot_eager"))
    parser.add_argument("--out", default="dit_xl_images", help="folder for the images")
    args = parser.parse_args(argv)

    pipe = load_pipeline(args.model)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # the paper's sampler
    inputs = pipeline_inputs(pipe, args.classes, steps=args.steps, guidance_scale=1.5)
    compare_and_show(pipe, inputs, "dit", args.out, compiler=args.compiler)


if __name__ == "__main__":
    main()
