"""One compiled graph region at run time: each call finds its step and slot, picks the step's
variant, threads the slot's state through it, and keeps what it writes.

    call(*args) ─▶ (step, slot) from the clock ─▶ slot state ─▶ StepRequest from the schedule
               ─▶ Variants.get ─▶ code(*args, *state inputs) ─▶ model outputs; state outputs kept

Per call the host does only dictionary work and, where the region has a timestep input, one
scalar read of it for step detection. Token selection, gather, compute and scatter all happen
inside the compiled variant.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.fx as fx

from ..contract import StateKey, StateKind, tokens_computed
from ..lowering import Compiler, compiled_module_on_stack, example_value
from ..passes.analysis import RegionAnalysis
from ..passes.choices import Choices
from ..passes.rewrite import Variant, step_modes
from ..schedule import SiteSpec, StepPlan, build_schedule
from .clock import Clock
from .state import SlotState, SlotStates
from .variants import FULL_STEP, StepRequest, Variants

log = logging.getLogger("toca_fx")

MAX_SLOTS = 8  # calls per step (cond, uncond, ...) before repeated calls count as new generations


class Region:
    """One Dynamo graph region with its compiled variants and per-slot state."""

    def __init__(
        self, gm: fx.GraphModule, analysis: RegionAnalysis, choices: Choices, clock: Clock, compiler: Compiler
    ):
        self.gm, self.analysis, self.choices, self.clock = gm, analysis, choices, clock
        self.config = choices.config
        self.specs = [SiteSpec(s.kind, s.layer, s.num_tokens) for s in analysis.sites]
        self.variants = Variants(gm, analysis, choices, compiler)
        self.states = SlotStates()
        self.schedules: dict[int, tuple[StepPlan, ...]] = {}
        self.calls_in_step: Counter = Counter()
        self.own_step: tuple[int | None, int] = (None, -1)  # (generation, step) counted from own calls
        self.runs = Counter()  # steps run, by variant type (counted on the first call slot)
        self.failure: str | None = None  # why this region fell back to running uncached
        self._context_placeholders = sorted({i for inputs in analysis.context.inputs for i in inputs})
        clock.on_new_generation.append(self.reset)
        self.owner_known = False  # whether the caches are tied to the compiled module's lifetime

    # -- schedule -------------------------------------------------------------------------
    def schedule(self, num_steps: int) -> tuple[StepPlan, ...]:
        """The step plans, with each site's k as the tokens it really computes (a reused site all or none)."""
        if num_steps not in self.schedules:
            plans = build_schedule(self.config, num_steps, self.specs)
            self.schedules[num_steps] = tuple(replace(p, fresh=self._computed(p.fresh)) for p in plans)
        return self.schedules[num_steps]

    def _computed(self, fresh: tuple[int, ...]) -> tuple[int, ...]:
        sites = self.analysis.sites
        modes = step_modes(sites, self.config, fresh)
        return tuple(tokens_computed(m, k, s.num_tokens) for m, k, s in zip(modes, fresh, sites))

    def plan(self, step: int) -> StepPlan | None:
        """The step's plan, or None (run FULL) when the number of steps is not known yet."""
        horizon = self.clock.horizon
        if not self.analysis.cacheable or self.failure or horizon is None or step >= horizon:
            return None
        return self.schedule(horizon)[step]

    # -- call -----------------------------------------------------------------------------
    def _position(self, args) -> tuple[int, int]:
        """(step, slot) of this call."""
        if self.analysis.timestep is not None:
            self.clock.observe(float(args[self.analysis.timestep].reshape(-1)[0]))
            step = self.clock.step
        elif self.clock.last_timestep is not None:
            step = self.clock.step
        else:  # no timestep input anywhere: the region counts its own calls
            self.own_step = self.clock.count_call(self.own_step)
            step = self.own_step[1]
        key = (self.clock.generation, step)
        slot = self.calls_in_step[key]
        if slot == MAX_SLOTS:  # one-step generations repeat one timestep: keep their states bounded
            log.info("toca_fx: %d calls at one step: new generation", slot + 1)
            self.clock.reset()
            step, slot, key = 0, 0, (self.clock.generation, 0)
        self.calls_in_step = Counter({key: slot + 1})
        return step, slot

    def __call__(self, *args):
        try:
            return self._run(args)
        except BaseException:  # e.g. KeyboardInterrupt mid-step: no later call may read this generation's caches
            self.clock.interrupted = True
            raise

    def _tie_caches_to_owner(self) -> None:
        """Dynamo keeps compiled code, so this region, alive until ``torch._dynamo.reset()``: tie
        the caches to the compiled module whose call runs this region (found once, up the stack)."""
        self.owner_known = True
        owner = compiled_module_on_stack()
        if owner is not None:
            weakref.finalize(owner, self.reset)

    def _run(self, args):
        if not self.owner_known:
            self._tie_caches_to_owner()
        step, slot = self._position(args)
        state = self.states.continued(self.clock.generation, step, slot)
        plan = self.plan(step)
        partial = plan is not None and not plan.full and state.ready
        request = StepRequest(plan.fresh, self._reusable_context(state, args)) if partial else FULL_STEP
        try:
            variant, code = self.variants.get(request, args, lambda v: self._inputs(state, v, request))
            outputs = code(*args, *self._inputs(state, variant, request))
        except Exception as exc:  # never break the model: run this region uncached from now on
            if self.failure is not None:
                raise
            variant, code = self._fail(request, exc, args)
            outputs = code(*args)
        partial = partial and self.failure is None
        self.runs["partial" if partial else "full"] += slot == 0
        if not partial:
            state.tensors.clear()
            state.remember_inputs(args, self._context_placeholders)
        else:  # a site that recomputed all its tokens starts its staleness count afresh
            for index, k in enumerate(plan.fresh):
                if k >= self.specs[index].num_tokens:
                    state.tensors.pop(StateKey(StateKind.COUNTER, index), None)
        state.tensors.update(zip(variant.outputs, outputs[variant.num_model_outputs :]))
        state.ready = True
        return outputs[: variant.num_model_outputs]

    def _reusable_context(self, state: SlotState, args) -> tuple[int, ...]:
        """The context values whose inputs are the same, unmodified objects as at the last full step."""
        same = state.unchanged_inputs(args, self._context_placeholders)
        return tuple(j for j, inputs in enumerate(self.analysis.context.inputs) if same.issuperset(inputs))

    def _inputs(self, state: SlotState, variant: Variant, request: StepRequest) -> list:
        return [
            request.fresh[key.index] if key.kind is StateKind.TOKENS else self._state(state, key)
            for key in variant.inputs
        ]

    def _state(self, state: SlotState, key: StateKey) -> torch.Tensor:
        value = state.tensors.get(key)
        if value is None and key.kind is StateKind.COUNTER:  # all tokens fresh after a full refresh
            stream = example_value(self.analysis.sites[key.index].stream)
            value = torch.zeros(stream.shape[:2], dtype=torch.float32, device=stream.device)
        return value

    def _fail(self, request: StepRequest, exc: Exception, args) -> tuple[Variant, Callable]:
        """Replace every variant by the original graph: exact, uncached, and said once."""
        what = "FULL" if request.full else "PARTIAL"
        log.warning("toca_fx: %s variant failed (%s: %s): this region now runs uncached", what, type(exc).__name__, exc)
        self.failure = f"{what} variant failed: {exc}"
        self.states.clear()
        return self.variants.replace_by_original(args)

    def reset(self) -> None:
        self.states.clear()
        self.calls_in_step.clear()
