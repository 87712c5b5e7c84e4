"""Generation identity: which generation of which request a call belongs to, and at which step.

Every cache belongs to one :class:`Generation`. Where a generation comes from, most trusted first:

* a pipeline call under ``toca_fx.enable(pipe)``: one generation per call, its steps counted by the
  pipeline's scheduler (``advance()`` after each ``scheduler.step``), never read from the model's inputs;
* a scope, ``with toca.generation(num_steps=...)``: one generation per scope; its step advances when
  the timestep changes (either direction), or at each ``advance()`` if the loop calls it;
* neither (a bare ``torch.compile(model, backend=...)``): :class:`HeuristicClock` infers generations
  from the timestep, and runs uncached, with a warning, wherever that is ambiguous.

Scopes are held in a context variable, so concurrent requests (threads, asyncio tasks) never share one.
"""

from __future__ import annotations

import contextvars
import logging
import weakref
from collections import Counter

import torch

from .state import SlotState

log = logging.getLogger("toca_fx")

MAX_SLOTS = 8  # calls of one region at one step (cond, uncond, ...) before the step is taken to be stuck

_ACTIVE: contextvars.ContextVar[tuple[Generation, ...]] = contextvars.ContextVar("toca_fx_generations", default=())


class Generation:
    """One generation of one request: its step, its length, and every call slot's state."""

    def __init__(self, num_steps: int | None, driven: bool = False):
        self.num_steps = num_steps
        self.step = 0
        self.driven = driven  # steps advance by advance() only; timesteps are not read
        self.timestep: tuple[float, ...] | None = None  # the current step's timestep, when not driven
        self.direction = 0  # +1 rising timesteps, -1 falling, 0 not known yet
        self.uncached: str | None = None  # why it runs uncached from here on
        self.states: dict[tuple[int, int], SlotState] = {}  # (region, slot) -> state
        self.calls: Counter = Counter()  # region -> calls at the current step
        self.last_called = -1  # the last step with a call

    @property
    def steps_run(self) -> int:
        return self.last_called + 1

    def advance(self) -> None:
        """The next step (a pipeline's scheduler, or a loop that counts its own steps, calls this)."""
        self.driven = True
        self.step += 1
        self.calls.clear()

    def observe(self, timestep: tuple[float, ...]) -> None:
        """A new timestep value is the next step, as long as every row keeps moving one way."""
        if self.driven or self.uncached or timestep == self.timestep:
            return
        if self.timestep is not None:
            signs = {(b > a) - (b < a) for a, b in zip(self.timestep, timestep)} - {0}
            if len(signs) > 1 or (self.direction and signs != {self.direction}):
                self.run_uncached("timesteps changed direction within one generation (two requests in one scope?)")
                return
            self.direction = signs.pop()
            self.step += 1
            self.calls.clear()
        self.timestep = timestep

    def run_uncached(self, reason: str) -> None:
        if self.uncached is None:
            log.warning("toca_fx: %s: this generation runs uncached from step %d", reason, self.step)
            self.uncached = reason
            self.states.clear()

    def slot(self, region: int) -> int | None:
        """This call's slot at the current step (its order among the region's calls), None when the
        step seems stuck (more than MAX_SLOTS calls)."""
        slot = self.calls[region]
        self.calls[region] += 1
        self.last_called = self.step
        return slot if slot < MAX_SLOTS else None

    def slot_state(self, region: int, slot: int) -> SlotState:
        """The slot's state if it ran the previous step, else a fresh one (whose step is then full)."""
        state = self.states.get((region, slot))
        if state is not None and state.step == self.step - 1:
            state.step = self.step
            return state
        if self.step > 0:  # a new input signature mid-generation, or a slot that skipped a step
            log.info(
                "toca_fx: fresh state for call slot %d at step %d (no cache from step %d)",
                slot,
                self.step,
                self.step - 1,
            )
        state = self.states[(region, slot)] = SlotState(self.step)
        return state


class Clock:
    """Finds each call's generation and slot for one ToCa backend: the innermost scope of this
    backend in the caller's context, else the heuristic generation of a bare ``torch.compile``.

    The heuristic reads the timestep: it must fall through a generation, with one value for all
    rows (repeats are more calls at the same step); a value that goes back up after falling starts
    the next generation. Anything else is ambiguous and runs uncached, with one warning that says
    why and what to do: no timestep tensor, rows with different timesteps, and rising timesteps.
    A fall that leaves the timestep sequence seen before (t -> t' where t -> t'' was seen: requests
    interleaved on one model, or a new schedule) starts a new generation at that call, never
    continuing a cache across it.
    """

    HINT = "wrap each generation in `with toca.generation(num_steps=...)`, or use toca_fx.enable(pipe)"

    def __init__(self, num_steps: int | None):
        self.num_steps = num_steps  # configured, or set by reset(num_steps)
        self.learned: int | None = None  # the length of the last completed generation
        self.ended = 0  # generations ended so far
        self.live: weakref.WeakSet[Generation] = weakref.WeakSet()  # generations whose caches may be held
        self.heuristic = self._new(None)
        self.seen_timestep = False  # whether any region of this backend has a timestep input
        self.rising = False  # a rising-timestep convention was seen: uncached until reset
        self.transitions: dict[float, float] = {}  # timestep -> the next one, as seen so far
        self.interrupted = False  # an exception escaped the model: the next heuristic call starts afresh
        self.warned: set[str] = set()

    @property
    def horizon(self) -> int | None:
        """Steps per generation where a generation does not say: configured, else learned."""
        return self.num_steps or self.learned

    def steps_of(self, generation: Generation) -> int | None:
        return generation.num_steps or self.horizon

    # -- generations ----------------------------------------------------------------------------
    def _new(self, num_steps: int | None, driven: bool = False) -> Generation:
        generation = Generation(num_steps, driven)
        self.live.add(generation)
        return generation

    def scope(self, num_steps: int | None = None, driven: bool = False) -> GenerationScope:
        return GenerationScope(self, self._new(num_steps, driven))

    def end(self, generation: Generation, completed: bool) -> None:
        """A generation is over: a completed one teaches the number of steps."""
        if completed and generation.steps_run and not generation.uncached:
            self.learned = generation.steps_run
        self.ended += 1

    def reset(self, num_steps: int | None = None) -> None:
        """End the heuristic generation; the next call starts a new one."""
        self.end(self.heuristic, completed=not self.interrupted)
        if num_steps is not None:
            self.num_steps = num_steps
            self.transitions.clear()  # a new schedule
        self.heuristic = self._new(None)
        self.rising = self.interrupted = False

    def position(self, region: int, timestep: torch.Tensor | None, first_call: bool) -> tuple[Generation, int] | None:
        """(generation, slot) of a call, or None to run it uncached."""
        generation = self.generation(timestep, first_call)
        if generation is None or generation.uncached:
            return None
        slot = generation.slot(region)
        if slot is None and generation is self.heuristic:  # one-step generations repeat one timestep
            log.info("toca_fx: more than %d calls at one step: new generation", MAX_SLOTS)
            self.reset()
            generation, slot = self.heuristic, self.heuristic.slot(region)
        elif slot is None:
            generation.run_uncached(f"more than {MAX_SLOTS} calls at one step: the step never advances")
            return None
        return generation, slot

    def generation(self, timestep: torch.Tensor | None, first_call: bool) -> Generation | None:
        """The generation of a call (the timestep observed where it counts), or None: uncached."""
        scoped = active_generation(self)
        if scoped is not None:
            if timestep is not None and not scoped.driven:
                scoped.observe(_values(timestep))
            return scoped
        return self._heuristic(timestep, first_call)

    def _heuristic(self, timestep: torch.Tensor | None, first_call: bool) -> Generation | None:
        if self.interrupted:
            log.info("toca_fx: the previous generation was interrupted by an exception: new generation")
            self.reset()
        if self.rising:
            return None
        if timestep is None:  # a region after a graph break uses the step the others read
            if self.seen_timestep or first_call:
                return self.heuristic if self.seen_timestep else None
            return self._ambiguous("no timestep tensor among the model's inputs (or a Python-number timestep)")
        values = _values(timestep)
        if len(set(values)) > 1:
            self.reset()  # the next uniform call starts a generation afresh
            return self._ambiguous("the batch rows have different timesteps")
        self.seen_timestep = True
        last = self.heuristic.timestep
        if last is not None and values[0] > last[0]:
            if self.heuristic.direction == 0:  # rose before ever falling
                self.rising = True
                return self._ambiguous("timesteps increase from step to step (a flow-matching 1 - t convention?)")
            log.info("toca_fx: timestep went up (%s -> %s): new generation", last[0], values[0])
            self.reset()
        elif last is not None and values[0] < last[0]:
            expected = self.transitions.get(last[0], values[0])
            self.transitions[last[0]] = values[0]
            if expected != values[0]:
                self._note(
                    "the timesteps left the sequence seen before (requests interleaved on one model, or a new "
                    "schedule): such a call starts a new generation"
                )
                self.reset()
        self.heuristic.observe(values)
        return self.heuristic

    def _ambiguous(self, reason: str) -> None:
        self._note(f"{reason}: running uncached")
        return None

    def _note(self, what: str) -> None:
        """Warn once per kind of ambiguity, with what to do instead."""
        if what not in self.warned:
            self.warned.add(what)
            log.warning("toca_fx: %s; %s", what, self.HINT)


def _values(timestep: torch.Tensor) -> tuple[float, ...]:
    """The timestep's values on the host: the one device-to-host read of a call that is not driven."""
    return tuple(float(v) for v in timestep.detach().reshape(-1).tolist())


def innermost_driven_generation() -> Generation | None:
    """The innermost generation in this context whose steps a pipeline counts (``enable``)."""
    for _, generation in reversed(_ACTIVE.get()):
        if generation.driven:
            return generation
    return None


def active_clocks() -> list[Clock]:
    """The clocks with a generation scope active in this context, innermost first."""
    return [clock for clock, _ in reversed(_ACTIVE.get())]


def active_generation(clock: Clock) -> Generation | None:
    """The innermost generation scope of ``clock`` in this context, if any."""
    for owner, generation in reversed(_ACTIVE.get()):
        if owner is clock:
            return generation
    return None


class GenerationScope:
    """``with toca.generation(num_steps=...) as generation``: the calls inside are one generation."""

    def __init__(self, clock: Clock, generation: Generation):
        self.clock, self.generation = clock, generation

    def __enter__(self) -> Generation:
        self.token = _ACTIVE.set(_ACTIVE.get() + ((self.clock, self.generation),))
        return self.generation

    def __exit__(self, exc_type, exc, tb) -> None:
        _ACTIVE.reset(self.token)
        self.clock.end(self.generation, completed=exc_type is None)
        self.generation.states.clear()  # its caches go with it
