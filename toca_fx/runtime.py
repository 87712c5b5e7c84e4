"""Run one compiled region: pick the step's variant, thread the caches through, keep the clock.

Per call the host does only dictionary work and, where the region has a timestep input, one
scalar read of it for step detection. Token selection, gather, compute and scatter all happen
inside the compiled variant.
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.fx as fx

from .config import ToCaConfig
from .passes.analysis import RegionAnalysis
from .passes.flops import node_flops, site_costs
from .passes.rewrite import StateKey, Variant, build_full, build_partial, site_modes
from .schedule import SiteSpec, StepPlan, build_schedule, predicted_flops

log = logging.getLogger("toca_fx")

MAX_SLOTS = 8  # calls per step (cond, uncond, ...) before repeated calls count as new generations


class Clock:
    """Step and generation counter shared by all regions of one ToCa backend.

    The step advances when a region sees a new (lower) timestep; a timestep that jumps back up,
    an exception that escaped a region in the previous generation, or :meth:`reset`, starts a new
    generation, which drops every region's caches. The number of steps is the configured one, or
    the length of the previous (completed) generation.
    """

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


@dataclass
class SlotState:
    """Caches of one call slot (pipelines that call the transformer twice per step get two)."""

    generation: int
    step: int  # the last step this slot ran: a slot that skipped a step is stale
    tensors: dict[StateKey, torch.Tensor | None] = field(default_factory=dict)
    ready: bool = False
    context_inputs: dict[int, tuple] = field(default_factory=dict)  # placeholder -> _snapshot at the full step


Compiler = Callable[[fx.GraphModule, list], Callable]


class Region:
    """One Dynamo graph region with its FULL and PARTIAL variants and per-slot state."""

    def __init__(
        self, gm: fx.GraphModule, analysis: RegionAnalysis, config: ToCaConfig, clock: Clock, compiler: Compiler
    ):
        self.gm, self.analysis, self.config, self.clock, self.compiler = gm, analysis, config, clock, compiler
        self.specs = [SiteSpec(s.kind, s.layer, s.num_tokens) for s in analysis.sites]
        self.variants: dict[tuple | str, tuple[Variant, Callable]] = {}  # compiled, by "full", k tuple or modes
        self.dispatch: dict[tuple | str, tuple[Variant, Callable]] = {}  # by "full" or k tuple
        self.schedules: dict[int, tuple[StepPlan, ...]] = {}
        self.states: dict[int, SlotState] = {}
        self.calls_in_step: Counter = Counter()
        self.own_step: tuple[int | None, int] = (None, -1)  # (generation, step) counted from own calls
        self.runs = Counter()  # steps run, by variant type (counted on the first call slot)
        self.failure: str | None = None  # why this region fell back to running uncached
        self._context_placeholders = sorted({i for inputs in analysis.context.inputs for i in inputs})
        clock.on_new_generation.append(self.reset)
        self.owner_known = False  # whether the caches are tied to the compiled module's lifetime

    # -- schedule -------------------------------------------------------------------------
    def schedule(self, num_steps: int) -> tuple[StepPlan, ...]:
        if num_steps not in self.schedules:
            plans = build_schedule(self.config, num_steps, self.specs)
            self.schedules[num_steps] = tuple(replace(p, fresh=self._effective(p.fresh)) for p in plans)
        return self.schedules[num_steps]

    def _effective(self, fresh: tuple[int, ...]) -> tuple[int, ...]:
        """What each site really computes: mixing sites run all tokens or none, unprovable sites all."""

        def effective(site, k):
            if site.policy == "full":
                return site.num_tokens
            return 0 if site.policy == "reuse" and k < site.num_tokens else k

        return tuple(effective(s, k) for s, k in zip(self.analysis.sites, fresh))

    def predicted_flops(self, num_steps: int) -> tuple[float, float]:
        """(uncached, ToCa) FLOPs of ``num_steps`` calls, from the schedule table and per-site costs,
        with partial steps reusing every context value."""
        context_work = self.analysis.context
        base, token, context = site_costs(self.gm, self.analysis.sites, context_work.dropped)
        full = sum(node_flops(build_full(self.gm, self.analysis, self.config).module).values())
        partial_base = base - context_work.dropped_flops
        toca = predicted_flops(self.schedule(num_steps), full, partial_base, token, context, self.specs)
        return float(base * num_steps), toca

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
        else:
            step = self.clock.step if self.clock.last_timestep is not None else self._count_own_step()
        key = (self.clock.generation, step)
        slot = self.calls_in_step[key]
        if slot == MAX_SLOTS:  # one-step generations repeat one timestep: keep their states bounded
            log.info("toca_fx: %d calls at one step: new generation", slot + 1)
            self.clock.reset()
            step, slot, key = 0, 0, (self.clock.generation, 0)
        self.calls_in_step = Counter({key: slot + 1})
        return step, slot

    def _count_own_step(self) -> int:
        """Without any timestep input the region counts its own calls per generation."""
        self.clock.resume_after_interruption()
        generation, step = self.own_step
        step = step + 1 if generation == self.clock.generation else 0
        horizon = self.clock.horizon
        if horizon is not None and step >= horizon:
            self.clock.reset()
            step = 0
        self.own_step = (self.clock.generation, step)
        self.clock.step, self.clock.started = step, True
        return step

    def __call__(self, *args):
        try:
            return self._run(args)
        except BaseException:  # e.g. KeyboardInterrupt mid-step: no later call may read this generation's caches
            self.clock.interrupted = True
            raise

    def _slot_state(self, step: int, slot: int) -> SlotState:
        """The slot's state if it ran the previous step of this generation, else a fresh one."""
        generation, state = self.clock.generation, self.states.get(slot)
        if state is not None and state.generation == generation and state.step == step - 1:
            state.step = step
            return state
        if step > 0:  # a new input signature mid-generation, or a slot that skipped a step
            log.info("toca_fx: fresh state for call slot %d at step %d (no cache from step %d)", slot, step, step - 1)
        state = self.states[slot] = SlotState(generation, step)
        return state

    def _drop_caches_with_owner(self, frame) -> None:
        """Dynamo keeps compiled code, so this region, alive until ``torch._dynamo.reset()``: tie
        the caches to the compiled module whose call runs this region (found once, up the stack)."""
        self.owner_known = True
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, torch._dynamo.eval_frame.OptimizedModule) or (
                isinstance(owner, torch.nn.Module) and getattr(owner, "_compiled_call_impl", None) is not None
            ):
                weakref.finalize(owner, self.reset)
                return
            frame = frame.f_back

    def _run(self, args):
        if not self.owner_known:
            self._drop_caches_with_owner(sys._getframe(2))
        step, slot = self._position(args)
        state = self._slot_state(step, slot)
        plan = self.plan(step)
        partial = plan is not None and not plan.full and state.ready
        key = (plan.fresh, self._reusable_context(state, args)) if partial else "full"
        try:
            variant, fn = self._variant(key, args, state)
            outputs = fn(*args, *self._inputs(state, variant, key))
        except Exception as exc:  # never break the model: run this region uncached from now on
            if self.failure is not None:
                raise
            variant, outputs = self._fail(key, exc, args), self.variants["full"][1](*args)
        partial = partial and self.failure is None
        self.runs["partial" if partial else "full"] += slot == 0
        if not partial:
            state.tensors.clear()
            state.context_inputs = {i: _snapshot(args[i]) for i in self._context_placeholders}
        else:  # a site that recomputed all its tokens starts its staleness count afresh
            for index, k in enumerate(plan.fresh):
                if k >= self.specs[index].num_tokens:
                    state.tensors.pop(("counter", index), None)
        state.tensors.update(zip(variant.outputs, outputs[variant.num_model_outputs :]))
        state.ready = True
        return outputs[: variant.num_model_outputs]

    def _reusable_context(self, state: SlotState, args) -> tuple[int, ...]:
        """The context values whose inputs are the same, unmodified objects as at the last full step."""
        saved = state.context_inputs
        same = {i for i in self._context_placeholders if i in saved and _unchanged(args[i], saved[i])}
        return tuple(j for j, inputs in enumerate(self.analysis.context.inputs) if same.issuperset(inputs))

    def _inputs(self, state: SlotState, variant: Variant, key) -> list:
        fresh = None if key == "full" else key[0]
        return [fresh[k[1]] if k[0] == "k" else self._state(state, k) for k in variant.inputs]

    def _state(self, state: SlotState, key: StateKey) -> torch.Tensor:
        value = state.tensors.get(key)
        if value is None and key[0] == "counter":  # all tokens fresh after a full refresh
            stream = self.analysis.sites[key[1]].stream.meta["example_value"]
            value = torch.zeros(stream.shape[:2], dtype=torch.float32, device=stream.device)
        return value

    def _variant(self, key, args, state: SlotState) -> tuple[Variant, Callable]:
        """The compiled variant for ``key``: "full", or (k per site, context values reused).

        Under a compiler with symbolic ints, PARTIAL variants are compiled per :func:`site_modes` and
        reused for every k they accept; a k tuple that none accepts gets another symbolic variant of
        that shape (not one with its k baked in, which would need a compile per step). Under other
        compilers, one variant per k tuple.
        """
        if key not in self.dispatch:
            self.dispatch[key] = self.variants[self._shape(key, args, state)]
        return self.dispatch[key]

    def _shape(self, key, args, state: SlotState):
        """The ``self.variants`` key that serves ``key``, compiled here if none does yet."""
        symbolic = key != "full" and getattr(self.compiler, "symbolic_ints", False)
        if not symbolic:
            if key not in self.variants:
                self._compile(key, key, False, args, state)
            return key
        fresh, reuse = key
        shape = ("modes", site_modes(self.analysis, fresh, self.config), reuse)
        tried = 0
        while (numbered := (*shape, tried)) in self.variants:
            variant, fn = self.variants[numbered]
            if _accepts(fn, [*args, *self._inputs(state, variant, key)]):
                return numbered
            tried += 1
        # A k of 1 is a size Inductor specialises on, so k tuples with 1s at other sites need a variant of their own.
        self._compile(numbered, key, True, args, state)
        return numbered

    def _compile(self, shape, key, symbolic: bool, args, state: SlotState) -> None:
        if key == "full":
            variant = build_full(self.gm, self.analysis, self.config)
        else:
            variant = build_partial(self.gm, self.analysis, self.config, key[0], symbolic=symbolic, reuse=key[1])
        log.info("toca_fx: compiling %s variant (%d state inputs)", _name(shape), len(variant.inputs))
        example = [*args, *self._inputs(state, variant, key)]
        self.variants[shape] = (variant, self.compiler(variant.module, example))

    def _fail(self, key, exc: Exception, args) -> Variant:
        """Replace every variant by the original graph: exact, uncached, and said once."""
        log.warning(
            "toca_fx: %s variant failed (%s: %s): this region now runs uncached", _name(key), type(exc).__name__, exc
        )
        self.failure = f"{_name(key)} variant failed: {exc}"
        self.states.clear()
        plain = Variant(self.gm, [], [], len(self.gm.graph.output_node().args[0]))
        self.variants = {"full": (plain, self.compiler(self.gm, list(args)))}
        self.dispatch = dict(self.variants)
        return plain

    def cache_bytes(self) -> dict[int, int]:
        """Bytes of cache held per site, summed over slots."""
        held: Counter = Counter()
        for state in self.states.values():
            for key, tensor in state.tensors.items():
                if key[0] in ("cache", "interior") and tensor is not None:
                    held[key[1]] += tensor.numel() * tensor.element_size()
        return dict(held)

    def reset(self) -> None:
        self.states.clear()
        self.calls_in_step.clear()


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


def _accepts(fn: Callable, args: list) -> bool:
    """Whether compiled code accepts these inputs (code without guards accepts all)."""
    return not hasattr(fn, "accepts") or fn.accepts(args)


def _name(key) -> str:
    if key == "full":
        return "FULL"
    if key[0] == "modes":
        counts = Counter(key[1])
        sites = ", ".join(f"{n} {mode}" for mode, n in sorted(counts.items()))
        return f"PARTIAL (k symbolic, #{key[3]}; {sites} sites; {len(key[2])} context values reused)"
    return f"PARTIAL k={key[0]} ({len(key[1])} context values reused)"
