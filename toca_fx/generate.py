"""Load a diffusers pipeline and compare a ToCa generation with the uncached one (used by the
``toca-fx`` command and the examples)."""

from __future__ import annotations

import inspect
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from .cost import predicted_flops
from .pipelines import disable, enable

log = logging.getLogger("toca_fx")


class UsageError(Exception):
    """A problem with what the user asked for, said in one line with what to do."""


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def load_pipeline(path_or_id: str, device: str | None = None, dtype: torch.dtype | None = None):
    """A diffusers pipeline from a ``save_pretrained`` folder (or a model folder inside one) or a hub id."""
    from diffusers import DiffusionPipeline

    path = Path(path_or_id).expanduser()
    if path.is_dir() and not (path / "model_index.json").exists() and (path.parent / "model_index.json").exists():
        log.info("toca_fx: %s is a model folder: loading the pipeline in %s", path, path.parent)
        path = path.parent
    if path.is_dir() and not (path / "model_index.json").exists():
        raise UsageError(f"{path_or_id} has no model_index.json: give a pipeline folder written by save_pretrained")
    if not path.exists() and (path_or_id.startswith((".", "/", "~")) or path_or_id.count("/") != 1):
        raise UsageError(f"no such folder: {path_or_id} (give a pipeline folder or a hub id such as org/model)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
    try:
        with warnings.catch_warnings():  # newer diffusers rename torch_dtype; older ones only know it
            warnings.simplefilter("ignore", FutureWarning)
            pipe = DiffusionPipeline.from_pretrained(str(path) if path.exists() else path_or_id, torch_dtype=dtype)
    except Exception as exc:  # hub and file errors are many pages long: keep the first line
        raise UsageError(
            f"cannot load {path_or_id!r}: {first_line(exc)} "
            "(check the path or hub id, your network, and access to gated models)"
        ) from exc
    if not isinstance(getattr(pipe, "transformer", None), torch.nn.Module):
        raise UsageError(f"{type(pipe).__name__} has no transformer: toca_fx caches diffusion transformers only")
    return pipe.to(device)


def pipeline_inputs(pipe, prompt: str | None, steps: int | None = None, seed: int = 0, **options) -> dict:
    """Keyword arguments for ``pipe(...)``: the prompt (or, for a class-conditional pipeline, class
    names or ids separated by commas; None: a placeholder prompt or class 0), the step count and the
    options the pipeline accepts."""
    accepted = inspect.signature(type(pipe).__call__).parameters
    kwargs = {key: value for key, value in options.items() if value is not None}
    unknown = [key for key in kwargs if key not in accepted]
    if unknown:
        raise UsageError(f"{type(pipe).__name__} does not take --{unknown[0].replace('_', '-')}")
    if "prompt" in accepted:
        kwargs["prompt"] = "a photo" if prompt is None else prompt
    elif "class_labels" in accepted:
        kwargs["class_labels"] = [0] if prompt is None else _class_labels(pipe, prompt)
    if steps is not None:
        kwargs["num_inference_steps"] = steps
    device = getattr(pipe, "device", torch.device("cpu"))
    kwargs["generator"] = torch.Generator(device=device).manual_seed(seed)
    return kwargs


def _class_labels(pipe, prompt: str) -> list[int]:
    known = getattr(pipe, "labels", {}) or {}
    labels = []
    for name in (name.strip() for name in prompt.split(",")):
        if not name.isdigit() and name not in known:
            examples = ", ".join(sorted(known)[:5])
            raise UsageError(f"unknown class {name!r}: give class ids or names such as {examples or '0, 1'}")
        labels.append(int(name) if name.isdigit() else known[name])
    return labels


def steps_of(pipe, inputs: dict) -> int | None:
    steps = inputs.get("num_inference_steps")
    default = inspect.signature(type(pipe).__call__).parameters.get("num_inference_steps")
    return steps or (default.default if default is not None else None)


@dataclass
class Comparison:
    preset: str
    uncached_s: float
    toca_s: float
    first_toca_s: float | None  # the first ToCa call, which compiles; None without a warm-up
    report: str
    stats: dict
    ideal_speedup: float | None
    images: dict[str, list] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        return self.uncached_s / self.toca_s

    def table(self) -> str:
        rows = [["uncached", f"{self.uncached_s:.3f}", "1.00"], [f"toca_fx ({self.preset})", f"{self.toca_s:.3f}"]]
        rows[1].append(f"{self.speedup:.2f}")
        lines = [tabulate(rows, headers=["pipeline", "generation s", "speedup"], tablefmt="github")]
        if self.first_toca_s is not None:
            lines.append(f"first toca_fx generation (compiles): {self.first_toca_s:.3f} s")
        if self.ideal_speedup:
            lines.append(f"FLOPs-ideal speedup of the transformer: {self.ideal_speedup:.2f}x")
        lines.append(f"steps: {self.stats['full_steps']} full, {self.stats['partial_steps']} partial (all generations)")
        error = _relative_error(self.images.get("toca"), self.images.get("uncached"))
        if error is not None:
            lines.append(f"relative difference of the images from the uncached ones: {error:.3e}")
        return "\n".join(lines)

    def save_images(self, folder: str) -> list[str]:
        os.makedirs(folder, exist_ok=True)
        written = []
        for name, images in self.images.items():
            for index, image in enumerate(images):
                written.append(os.path.join(folder, f"{name}-{index}.png"))
                image.save(written[-1])
        return written


def _relative_error(ours, theirs) -> float | None:
    if not ours or not theirs:
        return None
    a = np.stack([np.asarray(i, dtype=np.float64) for i in ours])
    b = np.stack([np.asarray(i, dtype=np.float64) for i in theirs])
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _timed(pipe, inputs: dict, seed: int) -> tuple[float, list]:
    inputs = {**inputs, "generator": torch.Generator(device=inputs["generator"].device).manual_seed(seed)}
    torch.manual_seed(seed)  # the random token selector draws from the global generator
    start = time.perf_counter()
    images = pipe(**inputs, output_type="pil").images
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, images


def compare(pipe, inputs: dict, preset: str | None = None, warmup: bool = True, seed: int = 0, **overrides):
    """Generate uncached, then with ToCa (after a compiling warm-up generation), from the same noise."""
    uncached_s, uncached = _timed(pipe, inputs, seed)
    toca = enable(pipe, preset, **overrides)
    try:
        first = _timed(pipe, inputs, seed)[0] if warmup else None
        toca_s, cached = _timed(pipe, inputs, seed)
    finally:
        disable(pipe)
    steps = steps_of(pipe, inputs)
    uncached_flops, toca_flops = predicted_flops(toca.regions, steps) if steps and toca.regions else (0.0, 0.0)
    return Comparison(
        preset=toca.preset[0] if toca.preset else str(preset),
        uncached_s=uncached_s,
        toca_s=toca_s,
        first_toca_s=first,
        report=toca.report(),
        stats=toca.stats,
        ideal_speedup=uncached_flops / toca_flops if toca_flops else None,
        images={"uncached": uncached, "toca": cached},
    )


def compare_and_show(pipe, inputs: dict, preset: str | None, out: str, **options) -> Comparison:
    """:func:`compare`, then print the conversion report and the timings and save the images in ``out``."""
    result = compare(pipe, inputs, preset, **options)
    written = result.save_images(out)
    print(result.report, result.table(), f"images: {', '.join(written)}", sep="\n\n")
    return result
