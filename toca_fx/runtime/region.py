"""One compiled graph region at run time: each call finds its step and slot, picks the step's
variant, threads the slot's state through it, and keeps what it writes.

    call(*args) ─▶ (generation, step, slot) from the clock ─▶ slot state ─▶ StepRequest from the schedule
               ─▶ Variants.get ─▶ code(*args, *state inputs) ─▶ model outputs; state outputs kept

Per call the host does only dictionary work, plus one read of the timestep where the generation's
steps are not counted by a pipeline. Token selection, gather, compute and scatter all happen
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

from ..contract import SitePolicy, StateKey, StateKind, StepMode, tokens_computed
from ..lowering import Compiler, accepts, compiled_module_on_stack, every_rank_agrees, example_value
from ..passes.analysis import RegionAnalysis
from ..passes.choices import Choices
from ..passes.rewrite import Variant, cache_dtype, state_layout, step_modes
from ..schedule import SiteSpec, StepPlan, build_schedule
from .clock import Clock
from .self_check import SelfCheckFailed, compare, quantized
from .state import SlotState
from .variants import FULL_STEP, StepRequest, Variants

log = logging.getLogger("toca_fx")


class Region:
    """One Dynamo graph region with its compiled variants; its state lives in each generation."""

    def __init__(
        self, gm: fx.GraphModule, analysis: RegionAnalysis, choices: Choices, clock: Clock, compiler: Compiler, key: int
    ):
        self.gm, self.analysis, self.choices, self.clock, self.key = gm, analysis, choices, clock, key
        self.config = choices.config
        self.specs = [SiteSpec(s.kind, s.layer, s.num_tokens) for s in analysis.sites]
        self.variants = Variants(gm, analysis, choices, compiler)
        self.layout = state_layout(analysis, choices)  # the state buffers, allocated per call slot
        self.schedules: dict[int, tuple[StepPlan, ...]] = {}
        self.calls = 0
        self.runs = Counter()  # steps run, by variant type (counted on the first call slot)
        self.failure: str | None = None  # why this region fell back to running uncached
        self.checked: set = set()  # variant keys whose first outputs passed the self-check
        # Outputs compare only where running the graph again neither draws new random numbers nor changes its inputs.
        self.checkable = self.config.self_check and not analysis.random and not analysis.mutates_inputs
        self._context_placeholders = sorted({i for inputs in analysis.context.inputs for i in inputs})
        self.owner_known = False  # whether the caches are tied to the compiled module's lifetime

    # -- schedule -------------------------------------------------------------------------
    def schedule(self, num_steps: int) -> tuple[StepPlan, ...]:
        """The step plans, with each site's k as the tokens it really computes (a reused site all or none)."""
        if num_steps not in self.schedules:
            plans = build_schedule(self.config, num_steps, self.specs, self.analysis.num_layers)
            self.schedules[num_steps] = tuple(replace(p, fresh=self._computed(p.fresh)) for p in plans)
        return self.schedules[num_steps]

    def _computed(self, fresh: tuple[int, ...]) -> tuple[int, ...]:
        sites = self.analysis.sites
        modes = step_modes(sites, self.config, fresh)
        return tuple(tokens_computed(m, k, s.num_tokens) for m, k, s in zip(modes, fresh, sites))

    def plan(self, step: int, num_steps: int | None) -> StepPlan | None:
        """The step's plan, or None (run FULL) when the generation's length is not known and the
        schedule depends on it. A schedule that does not (FORA, TaylorSeer: fixed interval, no step
        factor) plans any step from a horizon past it: the plan is the same for every length."""
        if num_steps is None and self.config.schedule_needs_length:
            return None
        num_steps = num_steps or 1 << step.bit_length()  # a power of 2 above step: few schedules built
        if not self.analysis.cacheable or self.failure or step >= num_steps:
            return None
        return self.schedule(num_steps)[step]

    # -- call -----------------------------------------------------------------------------
    def __call__(self, *args):
        try:
            return self._run(args)
        except BaseException:  # e.g. KeyboardInterrupt mid-step: no later call may read this generation's caches
            self.clock.interrupted = True
            raise

    def _tie_caches_to_owner(self) -> None:
        """Dynamo keeps compiled code, so this region, alive until ``torch._dynamo.reset()``: tie
        the heuristic generation's caches to the compiled module whose call runs this region."""
        self.owner_known = True
        owner = compiled_module_on_stack()
        if owner is not None:
            weakref.finalize(owner, self.clock.reset)

    def _run(self, args):
        if not self.owner_known:
            self._tie_caches_to_owner()
        timestep = args[self.analysis.timestep] if self.analysis.timestep is not None else None
        position = self.clock.position(self.key, timestep, first_call=self.calls == 0)
        self.calls += 1
        if position is None or self.failure is not None:
            return self.variants.original(args)(*args)
        generation, slot = position
        state = generation.slot_state(self.key, slot)
        plan = self.plan(generation.step, self.clock.steps_of(generation))
        partial = plan is not None and not plan.full and state.ready
        request = StepRequest(plan.fresh, self._reusable_context(state, args)) if partial else FULL_STEP
        state.ready = False  # until the variant has written every buffer it writes
        try:
            key, variant, code = self.variants.get(request, args, lambda v: self._inputs(state, v, request))
            outputs = code(*args, *self._inputs(state, variant, request))
            if key not in self.checked and self.checkable:
                self._self_check_on_every_rank(request, variant, code, outputs, args)
                self.checked.add(key)
        except Exception as exc:  # never break the model nor give a wrong output: run uncached from now on
            self._fail(request, exc, generation)
            return self.variants.original(args)(*args)
        self.runs["partial" if partial else "full"] += slot == 0
        if not partial:
            state.remember_inputs(args, self._context_placeholders)
        state.ready = True
        return outputs

    def _self_check_on_every_rank(self, request: StepRequest, variant: Variant, code: Callable, outputs, args):
        """The self-check. Under context parallelism one rank's failure is every rank's, agreed once
        per variant: a rank running uncached alone would run other collectives than its peers."""
        failures: list[SelfCheckFailed] = []
        self._self_check(request, variant, code, outputs, args, failures)
        if self.analysis.group is not None:
            device = next(a.device for a in args if isinstance(a, torch.Tensor))
            if not every_rank_agrees(not failures, self.analysis.group, device) and not failures:
                failures.append(SelfCheckFailed("the self-check failed on another rank"))
        if failures:
            raise failures[0]

    def _self_check(self, request: StepRequest, variant: Variant, code: Callable, outputs, args, failures) -> None:
        """A new variant's first outputs against its reference on the same inputs (``self_check.py``),
        with state buffers of its own (the slot's state is not touched). Every comparison runs, so
        that every rank runs the same collectives; ``failures`` collects the mismatches."""

        def check(name: str, ours, reference, lossy: bool) -> None:
            try:
                compare(name, ours, reference, lossy=lossy)
            except SelfCheckFailed as exc:
                failures.append(exc)

        if request.full:
            try:
                reference = self.gm.forward(*args)
            except Exception as exc:  # no reference to check against: not evidence of a wrong variant
                log.info("toca_fx: self-check skipped: the original graph does not run eagerly here (%s)", exc)
                return
            check("FULL variant", outputs, reference, quantized(args))
            return
        _, full, full_code = self.variants.get(FULL_STEP, args, lambda v: [])
        filled = SlotState(0)
        reference = full_code(*args, *self._inputs(filled, full, FULL_STEP))
        lossy = any(
            s.policy is not SitePolicy.FULL and cache_dtype(self.config, s) != example_value(s.output).dtype
            for s in self.analysis.sites
        )
        current = filled.copy()
        check("PARTIAL variant", code(*args, *self._inputs(current, variant, request)), reference, lossy)
        # Current caches hide a token the variant fails to recompute: with every token of each partial
        # site fresh and its cache all NaN, any such token shows.
        modes = step_modes(self.analysis.sites, self.config, request.fresh)
        partial = [i for i, mode in enumerate(modes) if mode is StepMode.PARTIAL]
        every = StepRequest(
            tuple(self.specs[i].num_tokens if i in partial else k for i, k in enumerate(request.fresh)),
            request.reused_context,
        )
        poisoned = filled.copy()
        for i in partial:
            poisoned.tensors[StateKey(StateKind.CACHE, i)].fill_(float("nan"))
        inputs = [*args, *self._inputs(poisoned, variant, every)]
        if partial and accepts(code, inputs):
            check("PARTIAL variant with every token fresh", code(*inputs), reference, lossy)

    def _reusable_context(self, state: SlotState, args) -> tuple[int, ...]:
        """The context values whose inputs are the same, unmodified objects as at the last full step."""
        same = state.unchanged_inputs(args, self._context_placeholders)
        return tuple(j for j, inputs in enumerate(self.analysis.context.inputs) if same.issuperset(inputs))

    def _inputs(self, state: SlotState, variant: Variant, request: StepRequest) -> list:
        """The variant's state inputs: token counts, and the slot's buffers (allocated on first use)."""
        inputs = []
        for key in variant.inputs:
            if key.kind is StateKind.TOKENS:
                inputs.append(request.fresh[key.index])
            else:
                if key not in state.tensors:
                    state.tensors[key] = self.layout[key].allocate()
                inputs.append(state.tensors[key])
        return inputs

    def _fail(self, request: StepRequest, exc: Exception, generation) -> None:
        """Run the original graph from now on: exact, uncached, and said once."""
        if self.failure is not None:
            raise exc
        what = (
            f"self-check: {exc}"
            if isinstance(exc, SelfCheckFailed)
            else f"{'FULL' if request.full else 'PARTIAL'} variant failed ({type(exc).__name__}: {exc})"
        )
        log.warning("toca_fx: %s: this region now runs uncached", what)
        self.failure = what
        generation.states.clear()

    def held_bytes(self) -> dict[int, int]:
        """Bytes of cache this region holds now, per site, over every live generation and slot."""
        held: Counter = Counter()
        for generation in list(self.clock.live):
            for (region, _), state in list(generation.states.items()):
                if region == self.key:
                    held.update(state.cache_bytes())
        return dict(held)
