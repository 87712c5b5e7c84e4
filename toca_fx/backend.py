"""The toca_fx torch.compile backend: capture → analyse → rewrite → lower → run.

Dynamo hands over one FX graph per graph-break region. For each region::

    analysis = analyse(gm, config)          # passes/: sites, token axes, score sources
    region   = Region(gm, analysis, ...)    # runtime: builds FULL/PARTIAL variants lazily,
    return region                           #          lowers each with the inner compiler

A region with nothing cacheable is lowered as it is, with one warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch
import torch.fx as fx

from .auto_preset import preset_for
from .config import COMPILERS, ToCaConfig, _check_int
from .passes.analysis import analyse
from .report import site_table
from .runtime import Clock, Region
from .schedule import schedule_table

log = logging.getLogger("toca_fx")


def lower(compiler: str) -> Callable[[fx.GraphModule, list], Callable]:
    """The inner compiler that turns each variant into code.

    A compiler marked ``symbolic_ints`` takes the token counts k of a PARTIAL variant as int
    inputs, so one compiled variant serves every step's k (see :class:`GuardedCode`).
    """
    if compiler == "eager":
        return _eager
    if compiler == "aot_eager":
        return _aot_eager
    return _inductor


def _eager(gm: fx.GraphModule, example_inputs: list) -> Callable:
    return gm.forward


def _inductor(gm: fx.GraphModule, example_inputs: list) -> Callable:
    from torch._inductor.compile_fx import compile_fx

    return _compile_outside_dynamo(compile_fx, gm, example_inputs)


def _aot_eager(gm: fx.GraphModule, example_inputs: list) -> Callable:
    return _compile_outside_dynamo(torch._dynamo.lookup_backend("aot_eager"), gm, example_inputs)


def _compile_outside_dynamo(backend: Callable, gm: fx.GraphModule, example_inputs: list) -> Callable:
    """``backend`` on static tensor shapes, with int inputs (token counts) symbolic.

    Variants are compiled at run time, outside Dynamo: give them a tracing context with a shape
    env as Dynamo would (else Inductor bypasses its FX graph cache), and fakify the inputs
    ourselves, or aot_autograd would make every tensor dimension dynamic.
    """
    from torch._dynamo.source import ConstantSource
    from torch._guards import TracingContext, tracing
    from torch._subclasses import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    if TracingContext.try_get() is not None:  # called from Dynamo itself (an uncached fallback)
        return backend(gm, example_inputs)
    shape_env = ShapeEnv(duck_shape=False)  # two token counts equal now may differ later
    fake_mode = FakeTensorMode(shape_env=shape_env)

    def fakify(index: int, value):
        if isinstance(value, torch.Tensor):
            return fake_mode.from_tensor(value, static_shapes=True)
        if isinstance(value, int) and not isinstance(value, bool):
            source = ConstantSource(f"toca_int_{index}")
            return shape_env.create_symintnode(shape_env.create_symbol(value, source), hint=value, source=source)
        return value

    fakes = [fakify(i, v) for i, v in enumerate(example_inputs)]
    with tracing(TracingContext(fake_mode)):
        code = backend(gm, fakes)
    return GuardedCode(code, shape_env, fakes)


class GuardedCode:
    """Compiled code with the conditions on its int inputs under which it is valid.

    Inductor may specialise on a symbolic int while compiling (k == 1, k <= N, ...). The runtime
    calls :meth:`accepts` once per new set of ints and compiles anew where the guards fail.
    """

    def __init__(self, code: Callable, shape_env, fakes: list):
        self.code = code
        self.guards = shape_env.produce_guards_expression(fakes)
        self.shape_env = shape_env

    def accepts(self, args) -> bool:
        return self.guards is None or bool(self.shape_env.evaluate_guards_expression(self.guards, list(args)))

    def __call__(self, *args):
        return self.code(*args)


for _compiler in (_eager, _inductor, _aot_eager):
    _compiler.symbolic_ints = True


def _has_symbolic_shapes(gm: fx.GraphModule, example_inputs) -> bool:
    values = [*example_inputs, *(n.meta.get("example_value") for n in gm.graph.nodes if n.op == "placeholder")]
    return any(
        isinstance(v, torch.SymInt) or (isinstance(v, torch.Tensor) and not all(isinstance(s, int) for s in v.shape))
        for v in values
    )


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

    def __init__(self, config: ToCaConfig | str | None = None, *, inner_compiler: Callable | None = None, **overrides):
        """``inner_compiler`` (``(gm, example_inputs) -> callable``) replaces ``config.compiler``:
        a hook for debugging and tests that want to see each variant."""
        self.auto_overrides = overrides if config == "auto" else None
        self.preset: tuple[str, str] | None = None  # (name, why) once "auto" has chosen
        if config == "auto":
            config = ToCaConfig.from_options(overrides)  # until the first graph's structure picks the preset
        elif isinstance(config, str):
            config = ToCaConfig.preset(config, **overrides)
        elif config is None:
            config = ToCaConfig.from_options(overrides)
        elif overrides:
            config = ToCaConfig.from_options({**_fields(config), **overrides})
        if not isinstance(config, ToCaConfig):
            raise TypeError(f"ToCa config must be a ToCaConfig, a preset name or None; got {type(config).__name__}")
        if inner_compiler is not None and not callable(inner_compiler):
            raise TypeError(f"ToCa inner_compiler must be callable (gm, example_inputs) -> fn; got {inner_compiler!r}")
        self.config = config
        self.inner_compiler = inner_compiler
        self.clock = Clock(config.num_steps)
        self.regions: list[Region] = []
        self.fallbacks: list[str] = []

    def __call__(self, gm: fx.GraphModule, example_inputs: list) -> Callable:
        compiler = self.inner_compiler or lower(self.config.compiler)
        if _has_symbolic_shapes(gm, example_inputs):
            reason = "graph has dynamic shapes (compile with dynamic=False)"
            log.warning("toca_fx: %s: running it uncached", reason)
            self.fallbacks.append(reason)
            return compiler(gm, example_inputs)
        if self.regions or self.fallbacks:
            log.info("toca_fx: another graph of %d nodes (a graph break or a recompile)", len(gm.graph.nodes))
        try:
            analysis = analyse(gm, self.config)
            if self.auto_overrides is not None and analysis.sites:
                self._choose_preset(analysis.sites)
                analysis = analyse(gm, self.config)
        except Exception as exc:  # an analysis bug must never break the user's model: run it exactly
            log.warning("toca_fx: analysis failed (%s: %s): this graph runs uncached", type(exc).__name__, exc)
            self.fallbacks.append(f"analysis failed: {exc}")
            return compiler(gm, example_inputs)
        if not analysis.cacheable:
            reasons = sorted({s.reason for s in analysis.sites}) or ["no residual branch over a token stream"]
            log.warning(
                "toca_fx: nothing cacheable in a graph of %d nodes (%s): it runs uncached",
                len(gm.graph.nodes),
                "; ".join(reasons),
            )
            self.fallbacks.append("; ".join(reasons))
            if not analysis.sites:
                return self._keep_time(compiler(gm, example_inputs), analysis.timestep)
        region = Region(gm, analysis, self.config, self.clock, compiler)
        self.regions.append(region)
        log.info("toca_fx: region %d: %s", len(self.regions) - 1, _summary(analysis))
        unproven = [site for site in analysis.sites if site.policy == "full"]
        if unproven and analysis.cacheable:
            log.warning(
                "toca_fx: region %d: %d of %d sites recompute every token, exactly (%s)",
                len(self.regions) - 1,
                len(unproven),
                len(analysis.sites),
                "; ".join(f"{site.name}: {site.reason}" for site in unproven),
            )
        for note in analysis.notes:
            log.info("toca_fx: %s", note)
        return region

    def _choose_preset(self, sites) -> None:
        name, why = preset_for(sites)
        self.config = ToCaConfig.preset(name, **self.auto_overrides)
        self.auto_overrides, self.preset = None, (name, why)
        log.info("toca_fx: preset %r chosen from the model's structure: %s", name, why)

    def _keep_time(self, fn: Callable, timestep: int | None) -> Callable:
        """A region without sites that reads the timestep still drives the step clock."""
        if timestep is None:
            return fn

        def run(*args):
            self.clock.observe(float(args[timestep].reshape(-1)[0]))
            return fn(*args)

        return run

    # -- control and observability -----------------------------------------------------------
    def reset(self, num_steps: int | None = None) -> None:
        """Start a new generation (optionally with a new number of steps); drops every cache."""
        if num_steps is not None:
            _check_int("num_steps", num_steps, minimum=1)
        log.info("toca_fx: reset: generation %d, %s steps", self.clock.generation + 1, num_steps or self.clock.horizon)
        self.clock.reset(num_steps)

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
            "generations": self.clock.generation,
        }

    def predicted_flops(self, num_steps: int) -> tuple[float, float]:
        """(uncached, ToCa) FLOPs of a ``num_steps`` generation as the schedule table predicts them."""
        pairs = [region.predicted_flops(num_steps) for region in self.regions]
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)

    def schedule_table(self, num_steps: int | None = None) -> str:
        """The step schedule (full or partial, k per site kind) of the first region with sites."""
        num_steps = num_steps or self.clock.horizon
        if not self.regions or num_steps is None:
            return "no schedule yet: run the model once, or give num_steps"
        region = self.regions[0]
        return schedule_table(region.schedule(num_steps), region.specs)

    def report(self) -> str:
        """One row per site: block, kind, policy, per-step ratio range and cache bytes."""
        return site_table(self.regions, self.clock.horizon)


def _fields(config: ToCaConfig) -> dict:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def _summary(analysis) -> str:
    counts: dict[str, int] = {}
    for site in analysis.sites:
        key = f"{site.kind}/{site.policy}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items()) + f"; {analysis.grid_note}"


class _ToCaBackend(_NeverShared):
    """``torch.compile(model, backend=toca_backend, options={...})``: ToCa with a config from options.

    Each call (one per graph region) gets its own state. Use :class:`ToCa` to share one clock
    across the regions of a model with graph breaks, or to call ``reset()``/``report()``.
    """

    __name__ = "toca_backend"

    def __call__(
        self, gm: fx.GraphModule, example_inputs: list, options: Mapping | None = None, mode: str | None = None
    ) -> Callable:
        if mode is not None:
            raise ValueError(
                f"toca_backend takes no torch.compile mode (got {mode!r}): pick the inner compiler with "
                f"options={{'compiler': ...}}, one of {', '.join(map(repr, COMPILERS))}"
            )
        return ToCa(ToCaConfig.from_options(options))(gm, example_inputs)


toca_backend = _ToCaBackend()
