"""The ``toca-fx`` command: report, generate."""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from .config import PRESETS
from .explain import explain_pipeline
from .generate import UsageError, compare_and_show, first_line, load_pipeline, pipeline_inputs, steps_of

PRESET_CHOICES = ("auto", *PRESETS)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that say where to look."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _pipeline_options(parser: argparse.ArgumentParser, prompt_required: bool) -> None:
    parser.add_argument("model", metavar="PATH_OR_ID", help="a pipeline folder (save_pretrained) or a hub id")
    parser.add_argument(
        "--prompt",
        required=prompt_required,
        help="the text prompt; for class-conditional pipelines (DiT) class names or ids separated by commas"
        + ("" if prompt_required else " (default: a placeholder prompt, or class 0)"),
    )
    parser.add_argument(
        "--preset",
        choices=PRESET_CHOICES,
        default="auto",
        help="ToCa preset; auto (default) chooses it from the transformer's structure",
    )
    parser.add_argument("--steps", type=_positive, help="number of inference steps (default: the pipeline's)")
    parser.add_argument("--height", type=_positive, help="image height in pixels (default: the pipeline's)")
    parser.add_argument("--width", type=_positive, help="image width in pixels (default: the pipeline's)")
    parser.add_argument("--guidance-scale", type=float, help="guidance scale (default: the pipeline's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the initial noise (default 0)")
    parser.add_argument(
        "--compiler",
        choices=("inductor", "eager", "aot_eager"),
        default="inductor",
        help="inner compiler for the ToCa graphs (default inductor; eager and aot_eager compile faster)",
    )
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), help="weights dtype (default: float16 on cuda, else float32)")
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log what toca_fx does")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="toca-fx",
        description="Token-wise feature caching (ToCa) for diffusers pipelines: inspect a model's conversion, "
        "and generate images with and without caching.",
        epilog="Hub ids need network access; folders written with save_pretrained work offline.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what toca_fx does (the toca_fx logger)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)

    report = commands.add_parser(
        "report",
        help="show how toca_fx converts a pipeline's transformer",
        description="Trace one forward of the pipeline's transformer (no generation) and print the sites found, "
        "their policies, fresh ratios and cache bytes, where the FLOPs are, and why any part stays uncached.",
    )
    _pipeline_options(report, prompt_required=False)

    generate = commands.add_parser(
        "generate",
        help="generate images uncached and with ToCa; print the speedup",
        description="Generate with the uncached pipeline, then with ToCa from the same noise (after one "
        "compiling warm-up generation), save both images and print times, speedup and the conversion report.",
    )
    _pipeline_options(generate, prompt_required=True)
    generate.add_argument("--out", default="toca_fx_images", help="folder for the images (default toca_fx_images)")
    generate.add_argument(
        "--no-warmup", action="store_true", help="time the first ToCa generation, compile time included"
    )

    return parser


def _load(args):
    dtype = DTYPES[args.dtype] if args.dtype else None
    pipe = load_pipeline(args.model, device=args.device, dtype=dtype)
    inputs = pipeline_inputs(
        pipe,
        args.prompt,
        steps=args.steps,
        seed=args.seed,
        height=args.height,
        width=args.width,
        guidance_scale=args.guidance_scale,
    )
    return pipe, inputs


def _preset(args) -> str | None:
    return None if args.preset == "auto" else args.preset


def _report(args) -> int:
    pipe, inputs = _load(args)
    inputs["num_inference_steps"] = steps_of(pipe, inputs)
    config = _preset(args) or "auto"
    print(explain_pipeline(pipe, inputs, config=config))
    return 0


def _generate(args) -> int:
    pipe, inputs = _load(args)
    options = dict(warmup=not args.no_warmup, seed=args.seed, compiler=args.compiler)
    compare_and_show(pipe, inputs, _preset(args), args.out, **options)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s")
    logging.getLogger("toca_fx").setLevel(logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:  # loading chatter (missing accelerate, config type notes) hides our output
        for library in ("diffusers", "transformers"):
            logging.getLogger(library).setLevel(logging.ERROR)
    command = {"report": _report, "generate": _generate}[args.command]
    try:
        return command(args)
    except UsageError as exc:
        print(f"toca-fx {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the pipeline's own failure: one line, the traceback with --verbose
        if args.verbose:
            raise
        print(f"toca-fx {args.command}: failed: {first_line(exc)} (run with -v for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
