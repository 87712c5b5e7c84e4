"""The conversion's self-check: each compiled variant, on its first call, against the original graph.

A rewrite that is wrong for some model must never give a wrong image silently. So, the first time
a variant runs (``ToCaConfig.self_check``, on by default):

* FULL is compared with the original graph (run eagerly) on the call's own inputs;
* a PARTIAL variant is run on the call's inputs with caches that a FULL run made from the same
  inputs. Every cached value is then current, so whatever the variant recomputes, gathers, scatters
  or reuses, its outputs must equal FULL's: the check is exact up to float noise. It runs once
  more with every token of each partial site fresh and that site's cache all NaN: current caches
  would hide a token the variant selects but does not recompute (a wrong gather or scatter).

A mismatch raises :class:`SelfCheckFailed`, naming the first diverging output; the region then runs
uncached, with one warning. Cost: the first call of each compiled variant runs the original graph
eagerly once (FULL) or FULL and the variant once more (PARTIAL); later calls cost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Relative L2 error allowed between a variant and its reference: compiled kernels reorder float math.
TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6, torch.float16: 3e-2, torch.bfloat16: 5e-2}


class SelfCheckFailed(Exception):
    """A variant's outputs differ from its reference on the same inputs."""


def compare(name: str, ours: Sequence, reference: Sequence, lossy: bool = False) -> None:
    """Raise :class:`SelfCheckFailed` at the first output of ``ours`` that differs from ``reference``.
    ``lossy``: a comparison that crosses a rounding the outputs do not share (caches in a narrower
    dtype, or quantized kernels compiled against eager ones), allowed ten times the difference."""
    for index, (a, b) in enumerate(zip(ours, reference, strict=True)):
        if not isinstance(b, torch.Tensor):
            if a != b:
                raise SelfCheckFailed(f"{name} output {index} is {a!r}, the original graph's is {b!r}")
            continue
        if a.shape != b.shape or a.dtype != b.dtype:
            raise SelfCheckFailed(
                f"{name} output {index} has shape {tuple(a.shape)} {a.dtype}, not {tuple(b.shape)} {b.dtype}"
            )
        if not b.is_floating_point():
            if not torch.equal(a, b):
                raise SelfCheckFailed(f"{name} output {index} differs from the original graph's")
            continue
        error = _relative_error(a, b)
        tolerance = TOLERANCE.get(b.dtype, 1e-3) * (10 if lossy else 1)
        if not error <= tolerance:  # also catches NaN
            raise SelfCheckFailed(
                f"{name} output {index} differs from the original graph's by {error:.3g} "
                f"(relative L2; allowed {tolerance:g})"
            )


def quantized(args: Sequence) -> bool:
    """Whether any input is a tensor subclass (a torchao quantized weight)."""
    return any(isinstance(a, torch.Tensor) and type(a) not in (torch.Tensor, torch.nn.Parameter) for a in args)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    finite = torch.isfinite(b)
    if not torch.equal(finite, torch.isfinite(a)):
        return float("nan")
    a, b = a[finite], b[finite]
    return float((a - b).norm() / b.norm().clamp_min(1e-12))
