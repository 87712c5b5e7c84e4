"""The variant cache of one region: a typed key to build, compile, guard and dispatch.

    StepRequest (full, or k per site + reusable context)
        ── step_modes ──▶ VariantKey (modes, context, number) ── build_full / build_partial ──▶ Variant
                                                                ── inner compiler ──▶ code (+ guards on k)

One PARTIAL variant serves every k tuple with the same step modes, as long as its guards accept
the ints (Inductor specialises on k == 1, for example); a k tuple that none accepts gets another
variant with the same modes and the next number.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch.fx as fx

from ..contract import StepMode
from ..lowering import Compiler, accepts
from ..passes.analysis import RegionAnalysis
from ..passes.choices import Choices
from ..passes.rewrite import Variant, build_full, build_partial, step_modes

log = logging.getLogger("toca_fx")


@dataclass(frozen=True)
class StepRequest:
    """What one call computes: a full step, or a partial step's k per site and the context values
    (indices into ``analysis.context.values``) it may take from the last full step."""

    fresh: tuple[int, ...] | None = None  # None: a full step
    reused_context: tuple[int, ...] = ()

    @property
    def full(self) -> bool:
        return self.fresh is None


FULL_STEP = StepRequest()


@dataclass(frozen=True)
class VariantKey:
    """What one compiled variant is: FULL (no modes), or PARTIAL for a tuple of step modes."""

    modes: tuple[StepMode, ...] | None = None
    reused_context: tuple[int, ...] = ()
    number: int = 0  # the n-th compile of these modes: the guards of the earlier ones rejected some k

    def describe(self) -> str:
        if self.modes is None:
            return "FULL"
        sites = ", ".join(f"{n} {mode}" for mode, n in sorted(Counter(self.modes).items()))
        return f"PARTIAL #{self.number} ({sites} sites; {len(self.reused_context)} context values reused)"


FULL_VARIANT = VariantKey()
InputsFor = Callable[[Variant], list]  # the state inputs a variant reads, after the model's own


class Variants:
    """Compiled variants of one region by key, built and compiled on first use."""

    def __init__(self, gm: fx.GraphModule, analysis: RegionAnalysis, choices: Choices, compiler: Compiler):
        self.gm, self.analysis, self.choices, self.compiler = gm, analysis, choices, compiler
        self.compiled: dict[VariantKey, tuple[Variant, Callable]] = {}
        self.dispatch: dict[StepRequest, VariantKey] = {}
        self.uncached: Callable | None = None

    def __len__(self) -> int:
        return len(self.compiled)

    def get(self, request: StepRequest, args, inputs_for: InputsFor) -> tuple[VariantKey, Variant, Callable]:
        if request not in self.dispatch:
            self.dispatch[request] = self._key(request, args, inputs_for)
        key = self.dispatch[request]
        return (key, *self.compiled[key])

    def _key(self, request: StepRequest, args, inputs_for: InputsFor) -> VariantKey:
        """The key of the compiled variant that serves ``request``, compiled here if none does yet."""
        if request.full:
            if FULL_VARIANT not in self.compiled:
                self._compile(FULL_VARIANT, args, inputs_for)
            return FULL_VARIANT
        modes = step_modes(self.analysis.sites, self.choices.config, request.fresh)
        key = VariantKey(modes, request.reused_context)
        while key in self.compiled:
            variant, code = self.compiled[key]
            if accepts(code, [*args, *inputs_for(variant)]):
                return key
            key = VariantKey(modes, request.reused_context, key.number + 1)
        self._compile(key, args, inputs_for)
        return key

    def _compile(self, key: VariantKey, args, inputs_for: InputsFor) -> None:
        if key.modes is None:
            variant = build_full(self.gm, self.analysis, self.choices)
        else:
            variant = build_partial(self.gm, self.analysis, self.choices, key.modes, key.reused_context)
        log.info("toca_fx: compiling %s variant (%d state inputs)", key.describe(), len(variant.inputs))
        self.compiled[key] = (variant, self.compiler(variant.module, [*args, *inputs_for(variant)]))

    def original(self, args) -> Callable:
        """The original graph, compiled on first use: what an uncached call runs."""
        if self.uncached is None:
            log.info("toca_fx: compiling the original graph (uncached calls)")
            self.uncached = self.compiler(self.gm, list(args))
        return self.uncached
