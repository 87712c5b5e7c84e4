"""The toca_fx torch.compile backend: capture → analyse → rewrite → lower → run.

Dynamo hands over one FX graph per graph-break region. For each region::

    analysis = analyse(gm)                      # passes/: sites, token axes, score sources (structure only)
    choices  = choose(analysis, config)         # passes/choices.py: what the config makes of them
    region   = Region(gm, analysis, choices)    # runtime/: builds FULL/PARTIAL variants lazily (passes/rewrite.py),
    return region                               #           lowers each with the inner compiler (lowering.py)

A graph with nothing cacheable, or one the analysis fails on, is lowered as it is, with one warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch
import torch.fx as fx

from . import report
from .auto_preset import preset_for
from .config import TOCA_OPTIONS, ToCaConfig, _check_int, _options, resolve
from .contract import SitePolicy
from .cost import predicted_flops
from .lowering import (
    Compiler,
    compiled_frames,
    compiled_module_on_stack,
    has_symbolic_shapes,
    inductor_options,
    inner_compiler,
    modules_on_stack,
    original_module,
    recompile_limit_value,
)
from .passes.analysis import RegionAnalysis, analyse
from .passes.choices import choose
from .passes.sites import Placement, stacked_blocks
from .runtime.clock import Clock, GenerationScope
from .runtime.region import Region

log = logging.getLogger("toca_fx")


class _NeverShared:
    """Dynamo reuses one ``torch.compile`` call's compiled code for another whose backend compares
    equal: for a backend with state that would share caches between models (or between two
    compiles of one model). Never comparing equal keeps each call's regions and state its own;
    Dynamo finds a call's own code by identity first, so it does not recompile."""

    def __eq__(self, other) -> bool:
        return False

    __hash__ = object.__hash__


class ToCa(_NeverShared):
    """A ToCa backend object that keeps its state, for users who need control.

    >>> toca = ToCa("pixart-alpha", num_steps=20)          # or ToCa(ToCaConfig(...), interval=4)
    >>> toca = ToCa("auto", num_steps=20)                  # preset chosen from the first graph's sites
    >>> model = torch.compile(model, backend=toca)
    >>> toca.reset(); image = sample(model); print(toca.report())
    """

    def __init__(self, config: ToCaConfig | str | None = None, *, inner_compiler: Compiler | None = None, **overrides):
        """``inner_compiler`` (``(gm, example_inputs) -> callable``) replaces ``config.compiler``:
        a hook for debugging and tests that want to see each variant."""
        self.config, self.auto_overrides = resolve(config, **overrides)
        if inner_compiler is not None and not callable(inner_compiler):
            raise TypeError(f"ToCa inner_compiler must be callable (gm, example_inputs) -> fn; got {inner_compiler!r}")
        self.preset: tuple[str, str] | None = None  # (name, why) once "auto" has chosen
        self.inner_compiler = inner_compiler
        self.clock = Clock(self.config.num_steps)
        self.regions: list[Region] = []
        self.fallbacks: list[str] = []

    def __call__(
        self, gm: fx.GraphModule, example_inputs: list, mode: str | None = None, options: Mapping | None = None
    ) -> Callable:
        """The Dynamo backend. ``mode`` and ``options`` come from ``torch.compile(..., mode=, options=)``:
        Inductor settings for every variant's compile (configure ToCa itself with its constructor)."""
        options = _options(options)
        toca_keys = [key for key in options if key in TOCA_OPTIONS]
        if toca_keys:
            raise ValueError(
                f"toca_fx: {toca_keys[0]!r} configures ToCa: give it to ToCa(...) (torch.compile's options= reach "
                "Inductor), or use backend='toca' with options"
            )
        compiler = self.inner_compiler or inner_compiler(self.config.compiler, inductor_options(mode, options))
        self._warn_near_recompile_limit()
        if has_symbolic_shapes(gm, example_inputs):
            return self._uncached(compiler, gm, example_inputs, "graph has dynamic shapes (compile with dynamic=False)")
        if torch.is_grad_enabled() and any(isinstance(v, torch.Tensor) and v.requires_grad for v in example_inputs):
            why = "grad mode is on and inputs require grad (caches are for inference: run under torch.no_grad())"
            return self._uncached(compiler, gm, example_inputs, why)
        if self.regions or self.fallbacks:
            log.info("toca_fx: another graph of %d nodes (a graph break or a recompile)", len(gm.graph.nodes))
        try:
            analysis = analyse(gm, _placement())
            if self.auto_overrides is not None and analysis.sites:
                self._choose_preset(analysis)
            choices = choose(analysis, self.config)
        except Exception as exc:  # an analysis bug must never break the user's model: run it exactly
            return self._uncached(compiler, gm, example_inputs, f"analysis failed ({type(exc).__name__}: {exc})")
        if not analysis.cacheable:
            reasons = "; ".join(
                sorted({s.reason for s in analysis.sites}) or ["no residual branch over a token stream"]
            )
            what = f"nothing cacheable in a graph of {len(gm.graph.nodes)} nodes ({reasons})"
            if not analysis.sites:
                fn = self._uncached(compiler, gm, example_inputs, reasons, what)
                return self._keep_time(fn, analysis.timestep)
            log.warning("toca_fx: %s: this graph runs uncached", what)
            self.fallbacks.append(reasons)
        region = Region(gm, analysis, choices, self.clock, compiler, key=len(self.regions))
        self.regions.append(region)
        self._log_conversion(len(self.regions) - 1, analysis, choices)
        return region

    def _uncached(self, compiler: Compiler, gm, example_inputs: list, reason: str, what: str = "") -> Callable:
        """The graph lowered as it is; ``reason`` is kept in ``fallbacks``, ``what`` (or the reason) logged."""
        log.warning("toca_fx: %s: this graph runs uncached", what or reason)
        self.fallbacks.append(reason)
        return compiler(gm, example_inputs)

    def _choose_preset(self, analysis: RegionAnalysis) -> None:
        name, why = preset_for(analysis.sites)
        self.config = ToCaConfig.preset(name, **self.auto_overrides)
        self.auto_overrides, self.preset = None, (name, why)
        log.info("toca_fx: preset %r chosen from the model's structure: %s", name, why)

    def _log_conversion(self, index: int, analysis: RegionAnalysis, choices) -> None:
        counts: dict[str, int] = {}
        for site in analysis.sites:
            counts[f"{site.kind}/{site.policy}"] = counts.get(f"{site.kind}/{site.policy}", 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in counts.items())
        log.info("toca_fx: region %d: %s; %s", index, summary, choices.grid_note)
        unproven = [site for site in analysis.sites if site.policy is SitePolicy.FULL]
        if unproven and analysis.cacheable:
            log.warning(
                "toca_fx: region %d: %d of %d sites recompute every token, exactly (%s)",
                index,
                len(unproven),
                len(analysis.sites),
                "; ".join(f"{site.name}: {site.reason}" for site in unproven),
            )
        for note in choices.notes:
            log.info("toca_fx: %s", note)

    def _keep_time(self, fn: Callable, timestep: int | None) -> Callable:
        """A region without sites that reads the timestep still drives the step clock."""
        if timestep is None:
            return fn

        def run(*args):
            self.clock.generation(args[timestep], first_call=False)
            return fn(*args)

        return run

    def _warn_near_recompile_limit(self) -> None:
        """Each new backend for a module is a new Dynamo compile of its forward, and Dynamo stops
        compiling a frame at its recompile limit: say so before that happens."""
        module = compiled_module_on_stack()
        if module is None:
            return
        frames, limit = compiled_frames(original_module(module)), recompile_limit_value()
        if frames >= limit - 1:
            log.warning(
                "toca_fx: %s already has %d compiled frames; Dynamo stops compiling it at %d "
                "(torch._dynamo.config.recompile_limit) and then runs it eagerly, uncached: call "
                "torch._dynamo.reset() before compiling it with yet another backend, or use toca_fx.enable(pipe), "
                "which compiles once and swaps configs",
                type(original_module(module)).__name__,
                frames,
                limit,
            )

    # -- generations, control and observability ----------------------------------------------
    def generation(self, num_steps: int | None = None, manual_steps: bool = False) -> GenerationScope:
        """``with toca.generation(num_steps=20) as generation:`` the calls inside are one generation of
        one request, with caches of their own (threads and interleaved scopes never share them).

        Its steps advance when the timestep input changes (in either direction), or, with
        ``manual_steps``, only at each ``generation.advance()`` the loop calls after a step (then the
        timestep is never read on the host). ``num_steps``: the generation's length (default: the
        config's, else the last one learned)."""
        if num_steps is not None:
            _check_int("num_steps", num_steps, minimum=1)
        return self.clock.scope(num_steps, driven=manual_steps)

    def reset(self, num_steps: int | None = None) -> None:
        """Start a new generation of a bare torch.compile (optionally with a new number of steps)."""
        if num_steps is not None:
            _check_int("num_steps", num_steps, minimum=1)
        log.info("toca_fx: reset: new generation, %s steps", num_steps or self.clock.horizon)
        self.clock.reset(num_steps)

    @property
    def num_steps(self) -> int | None:
        """Steps per generation where a generation does not say: configured, else learned."""
        return self.clock.horizon

    @property
    def sites(self):
        return [site for region in self.regions for site in region.analysis.sites]

    @property
    def stats(self) -> dict[str, int]:
        runs = [r.runs for r in self.regions] or [{}]
        return {
            "full_steps": max(r.get("full", 0) for r in runs),
            "partial_steps": max(r.get("partial", 0) for r in runs),
            "compiled_variants": sum(len(r.variants) for r in self.regions),
            "regions": len(self.regions),
            "generations": self.clock.ended,
        }

    def predicted_flops(self, num_steps: int) -> tuple[float, float]:
        """(uncached, ToCa) FLOPs of a ``num_steps`` generation as the schedule table predicts them."""
        return predicted_flops(self.regions, num_steps)

    def schedule_table(self, num_steps: int | None = None) -> str:
        """The step schedule (full or partial, k per site kind) of the first region with sites."""
        num_steps = num_steps or self.clock.horizon
        if not self.regions or num_steps is None:
            return "no schedule yet: run the model once, or give num_steps"
        region = self.regions[0]
        return report.schedule_table(region.schedule(num_steps), region.specs)

    def report(self) -> str:
        """One row per site: block, kind, policy, per-step ratio range and cache bytes."""
        return report.site_table(self.regions, self.clock.horizon)


def _placement() -> Placement:
    """Where the graph Dynamo is compiling sits in the compiled model, from the modules whose calls
    are running: the innermost is the one whose forward is compiled, the model is the compiled one."""
    running = modules_on_stack()
    if not running:
        return Placement()
    compiled = compiled_module_on_stack()
    model = original_module(compiled) if compiled is not None else running[-1]
    path = next((name for name, module in model.named_modules() if module is running[0]), "")
    return Placement(path, stacked_blocks(model))


class _ToCaBackend(_NeverShared):
    """``torch.compile(model, backend=toca_backend, options={...})``: ToCa with a config from options.

    Each call (one per graph region) gets its own state. Use :class:`ToCa` to share one clock
    across the regions of a model with graph breaks, or to call ``reset()``/``report()``.
    """

    __name__ = "toca_backend"

    def __call__(
        self, gm: fx.GraphModule, example_inputs: list, options: Mapping | None = None, mode: str | None = None
    ) -> Callable:
        """ToCa keys of ``options`` configure ToCa (as ``ToCa(...)`` takes them); the others, and
        ``mode``, are Inductor settings for every variant's compile."""
        options = _options(options)
        toca = {key: value for key, value in options.items() if key in TOCA_OPTIONS}
        inductor = {key: value for key, value in options.items() if key not in TOCA_OPTIONS}
        try:
            settings = inductor_options(mode, inductor)
        except ValueError as exc:
            raise ValueError(f"toca_backend: {exc}, nor a ToCa option ({', '.join(TOCA_OPTIONS)})") from None
        return ToCa(**toca)(gm, example_inputs, options=settings)


toca_backend = _ToCaBackend()
