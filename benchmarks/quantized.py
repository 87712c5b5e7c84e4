"""Quantization × toca_fx: torchao int8 alone, toca_fx alone, and both, on the PixArt-α-shaped model of
``examples/pixart_speedup.py``, side by side in one process (Inductor for every row).

    python -m benchmarks.quantized [--repeats N] [--layers L]

Rows: plain torch.compile of the float model (the 1.00x reference), of the model quantized with torchao's
int8 weight-only and int8 dynamic-activation configs, then toca_fx's preset on each of the three. Speedups
are against plain torch.compile of the float model; errors are of the final latents against the float
model run eagerly from the same noise.
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
from tabulate import tabulate
from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
from tqdm.auto import tqdm

import toca_fx
from examples.pixart_speedup import PixArtShape, build_model, generate, timed
from toca_fx.lowering import reset_dynamo

QUANTIZATIONS = {
    "float32": None,
    "int8 weight-only": Int8WeightOnlyConfig,
    "int8 dynamic": Int8DynamicActivationInt8WeightConfig,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--preset", default="pixart-alpha", choices=toca_fx.PRESETS)
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per row (median)")
    args = parser.parse_args()
    shape = PixArtShape(layers=args.layers, heads=4, head_dim=64, caption_channels=256)
    print(f"PixArt-α-shaped model: {shape.describe()}, {torch.get_num_threads()} threads", flush=True)
    model = build_model(shape)
    reference = generate(model, shape)

    reset_dynamo()
    compiled = {}  # (weights, method) -> model; every one compiled before any is timed
    for name, config in QUANTIZATIONS.items():
        quantized = copy.deepcopy(model)
        if config is not None:
            quantize_(quantized, config())
        compiled[name, "torch.compile"] = torch.compile(quantized, dynamic=False)
        toca = toca_fx.ToCa(args.preset, num_steps=shape.steps)
        compiled[name, f"toca_fx {args.preset}"] = torch.compile(quantized, backend=toca, dynamic=False)
    latents = {key: generate(fn, shape) for key, fn in tqdm(compiled.items(), desc="compile")}
    times = {key: [] for key in compiled}
    for _ in tqdm(range(args.repeats), desc="timed rounds"):  # round-robin: load on a shared machine hits every row
        for key, fn in compiled.items():
            times[key].append(timed(lambda: generate(fn, shape), 1)[0])  # noqa: B023
    base = statistics.median(times["float32", "torch.compile"])
    rows = [
        [*key, statistics.median(times[key]), base / statistics.median(times[key]), relative(latents[key], reference)]
        for key in compiled
    ]
    headers = ["weights", "method", "generation s", "speedup vs float compile", "rel. error vs float eager"]
    print(tabulate(rows, headers=headers, floatfmt=(None, None, ".2f", ".2f", ".2e")))


def relative(x: torch.Tensor, reference: torch.Tensor) -> float:
    return ((x - reference).norm() / reference.norm()).item()


if __name__ == "__main__":
    main()
