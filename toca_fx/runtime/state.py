"""Per-call-slot state: the caches, counters and scores one call slot of one generation carries
between steps.

A slot is the order of a call within a step (pipelines that call the transformer twice per step,
cond then uncond, have two). A slot's state continues only from the previous step of the same
generation (``Generation.slot_state``); anything else starts a fresh state, and a full step.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

from ..contract import StateKey


@dataclass
class SlotState:
    """Caches of one call slot."""

    step: int  # the last step this slot ran: a slot that skipped a step is stale
    tensors: dict[StateKey, torch.Tensor] = field(default_factory=dict)
    ready: bool = False  # whether a full step has filled the caches
    context_inputs: dict[int, tuple] = field(default_factory=dict)  # placeholder -> snapshot at the full step

    def copy(self) -> SlotState:
        """A slot state with copies of these buffers (for runs that must not touch them)."""
        return SlotState(self.step, {key: value.clone() for key, value in self.tensors.items()})

    def unchanged_inputs(self, args, placeholders) -> set[int]:
        """The placeholders whose inputs are the same, unmodified objects as at the last full step."""
        saved = self.context_inputs
        return {i for i in placeholders if i in saved and _unchanged(args[i], saved[i])}

    def remember_inputs(self, args, placeholders) -> None:
        self.context_inputs = {i: _snapshot(args[i]) for i in placeholders}

    def cache_bytes(self) -> dict[int, int]:
        """Bytes of cached activations held per site."""
        held: Counter = Counter()
        for key, tensor in self.tensors.items():
            if key.is_cache:
                held[key.index] += tensor.numel() * tensor.element_size()
        return dict(held)


def _snapshot(value) -> tuple:
    """An input as a full step saw it: the object, and a tensor's in-place version counter."""
    return value, value._version if isinstance(value, torch.Tensor) and not value.is_inference() else None


def _unchanged(value, snapshot: tuple) -> bool:
    """Same object, and for a tensor no in-place change since. Inference tensors keep no version
    counter, so they never count as unchanged."""
    saved, version = snapshot
    if isinstance(value, torch.Tensor):
        return value is saved and version is not None and value._version == version
    return value == saved
