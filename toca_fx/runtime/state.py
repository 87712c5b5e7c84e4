"""Per-call-slot state: the caches, counters and scores one call slot carries between steps.

A slot is the order of a call within a step (pipelines that call the transformer twice per step,
cond then uncond, have two). A slot's state continues only from the previous step of the same
generation; anything else starts a fresh state, which makes the step a full one.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import torch

from ..contract import StateKey

log = logging.getLogger("toca_fx")


@dataclass
class SlotState:
    """Caches of one call slot."""

    generation: int
    step: int  # the last step this slot ran: a slot that skipped a step is stale
    tensors: dict[StateKey, torch.Tensor] = field(default_factory=dict)
    ready: bool = False  # whether a full step has filled the caches
    context_inputs: dict[int, tuple] = field(default_factory=dict)  # placeholder -> snapshot at the full step

    def unchanged_inputs(self, args, placeholders) -> set[int]:
        """The placeholders whose inputs are the same, unmodified objects as at the last full step."""
        saved = self.context_inputs
        return {i for i in placeholders if i in saved and _unchanged(args[i], saved[i])}

    def remember_inputs(self, args, placeholders) -> None:
        self.context_inputs = {i: _snapshot(args[i]) for i in placeholders}


class SlotStates:
    """The states of one region's call slots."""

    def __init__(self):
        self.by_slot: dict[int, SlotState] = {}

    def continued(self, generation: int, step: int, slot: int) -> SlotState:
        """The slot's state if it ran the previous step of this generation, else a fresh one."""
        state = self.by_slot.get(slot)
        if state is not None and state.generation == generation and state.step == step - 1:
            state.step = step
            return state
        if step > 0:  # a new input signature mid-generation, or a slot that skipped a step
            log.info("toca_fx: fresh state for call slot %d at step %d (no cache from step %d)", slot, step, step - 1)
        state = self.by_slot[slot] = SlotState(generation, step)
        return state

    def held_bytes(self) -> dict[int, int]:
        """Bytes of cache held per site, summed over slots."""
        held: Counter = Counter()
        for state in self.by_slot.values():
            for key, tensor in state.tensors.items():
                if key.is_cache:
                    held[key.index] += tensor.numel() * tensor.element_size()
        return dict(held)

    def clear(self) -> None:
        self.by_slot.clear()


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
