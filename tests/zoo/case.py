"""A zoo model with its call: latents in, a same-shaped prediction out, and a small sampling loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Case:
    """A model and how to call it on latents ``x`` at timestep ``t``.

    Latents are (batch, 4, height, width) unless ``shape`` gives another layout (video, audio).
    """

    name: str
    model: torch.nn.Module
    call: Callable
    batch: int
    height: int
    width: int
    shape: tuple[int, ...] | None = None

    def latents(self, seed=0) -> torch.Tensor:
        shape = self.shape or (self.batch, 4, self.height, self.width)
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def timesteps(num_steps: int, batch: int) -> list[torch.Tensor]:
    values = [round(999 * (1 - i / max(1, num_steps - 1))) for i in range(num_steps)]
    return [torch.full((batch,), t) for t in values]


@torch.no_grad()
def sample(case: Case, model, num_steps: int, seed=0, generation=None) -> list[torch.Tensor]:
    """A small Euler-like loop; returns the model output of every step. ``generation``: a ToCa
    generation whose steps the loop counts (``advance()`` after each), as a pipeline under
    ``toca_fx.enable`` does; without one, a bare compile finds the steps from the timestep."""
    x = case.latents(seed)
    outputs = []
    for t in timesteps(num_steps, case.batch):
        out = case.call(model, x, t)
        outputs.append(out)
        x = x - 0.05 * out[:, : x.shape[1]]
        if generation is not None:
            generation.advance()
    return outputs
