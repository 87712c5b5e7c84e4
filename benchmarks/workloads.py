"""The trained digit models as benchmark workloads: model, sampler, steps, and fixed batches of noise and labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from benchmarks import digits

WORKLOADS = ("dit", "pixart")


@dataclass
class Batch:
    noise: torch.Tensor  # (B, 1, IMAGE_SIZE, IMAGE_SIZE)
    labels: torch.Tensor  # (B,) digits, for class accuracy
    condition: torch.Tensor  # what the sampler conditions on: labels (DiT) or caption tokens (PixArt)


@dataclass
class Workload:
    name: str
    model: nn.Module
    preset: str  # the toca_fx preset with the faithful ToCa scores for this model
    num_steps: int
    sampler_name: str
    sample_fn: Callable  # (model, condition, noise, num_steps) -> images
    batches: list[Batch]

    def sample(self, model: Callable, batch: Batch) -> torch.Tensor:
        return self.sample_fn(model, batch.condition, batch.noise, num_steps=self.num_steps)

    @property
    def num_samples(self) -> int:
        return sum(len(b.labels) for b in self.batches)


def make_batches(samples: int, batch_size: int, captions: bool, seed: int = 0) -> list[Batch]:
    """``samples`` rounded up to whole batches; labels cycle through the ten digits; noise and caption attributes
    come from one seeded generator, so every method sees the same batches."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for start in range(0, samples, batch_size):
        labels = (torch.arange(start, start + batch_size) % digits.NUM_CLASSES).long()
        noise = torch.randn(batch_size, 1, digits.IMAGE_SIZE, digits.IMAGE_SIZE, generator=generator)
        bins = torch.randint(0, digits.ATTRIBUTE_BINS, (batch_size, len(digits.ATTRIBUTES)), generator=generator)
        condition = digits.caption_tokens(labels, bins) if captions else labels
        batches.append(Batch(noise, labels, condition))
    return batches


def load_workload(name: str, samples: int, batch_size: int, steps: int | None = None) -> Workload:
    """``dit``: the class-conditional DiT, DDIM (50 steps); ``pixart``: the captioned PixArt model, DPM-Solver++
    (20 steps). ``steps`` overrides the step count (smoke runs)."""
    if name == "dit":
        return Workload(
            "DiT",
            digits.load_dit(),
            "dit",
            steps or 50,
            "DDIM",
            digits.sample_dit,
            make_batches(samples, batch_size, captions=False),
        )
    if name == "pixart":
        return Workload(
            "PixArt",
            digits.load_pixart(),
            "pixart-alpha",
            steps or 20,
            "DPM-Solver++",
            digits.sample_pixart,
            make_batches(samples, batch_size, captions=True),
        )
    raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
