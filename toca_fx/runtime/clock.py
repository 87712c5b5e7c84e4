"""The step clock: which generation and which step a call belongs to.

The step advances when a region sees a new (lower) timestep; a timestep that jumps back up, an
exception that escaped a region in the previous generation, or :meth:`Clock.reset`, starts a new
generation, which drops every region's caches. The number of steps is the configured one, or the
length of the previous (completed) generation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("toca_fx")


class Clock:
    """Step and generation counter shared by all regions of one ToCa backend."""

    def __init__(self, num_steps: int | None):
        self.num_steps = num_steps
        self.generation = 0
        self.step = 0
        self.last_timestep: float | None = None
        self.started = False  # whether the current generation has run a step
        self.learned: int | None = None
        self.interrupted = False  # an exception escaped a region: the next call starts afresh
        self.on_new_generation: list[Callable[[], None]] = []

    @property
    def horizon(self) -> int | None:
        return self.num_steps or self.learned

    def reset(self, num_steps: int | None = None) -> None:
        if self.started and not self.interrupted:
            self.learned = self.step + 1
        self.started = self.interrupted = False
        if num_steps is not None:
            self.num_steps = num_steps
        self.generation += 1
        self.step = 0
        self.last_timestep = None
        for drop_state in self.on_new_generation:
            drop_state()

    def resume_after_interruption(self) -> None:
        if self.interrupted:
            log.info("toca_fx: the previous generation was interrupted by an exception: new generation")
            self.reset()

    def observe(self, timestep: float) -> None:
        self.resume_after_interruption()
        last = self.last_timestep
        if last is not None and timestep > last:
            log.info("toca_fx: timestep went up (%s -> %s): new generation", last, timestep)
            self.reset()
        elif last is not None and timestep < last:
            self.step += 1
        self.started = True
        self.last_timestep = timestep

    def count_call(self, own_step: tuple[int | None, int]) -> tuple[int, int]:
        """For a region without a timestep input: its calls count the steps of a generation.
        ``own_step`` is the region's last (generation, step); returns the new one."""
        self.resume_after_interruption()
        generation, step = own_step
        step = step + 1 if generation == self.generation else 0
        if self.horizon is not None and step >= self.horizon:
            self.reset()
            step = 0
        self.step, self.started = step, True
        return self.generation, step
