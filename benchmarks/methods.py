"""The rows of the benchmark: how each method turns a model into the callable a sampler calls.

Every method gives a ``Prepared``: the callable for timed and quality generations, one for counting FLOPs (an
eager twin: FlopCounterMode sees no ops inside compiled code, and Dynamo does not run compiled frames while a
dispatch mode is active), and a ``reset`` run before each generation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

import toca_fx
from benchmarks import cache_dit_peers, peers
from toca_fx import ToCaConfig
from toca_fx.lowering import recompile_limit
from toca_fx.passes.flops import flop_counter


@dataclass
class Prepared:
    run: Callable  # what the sampler calls
    count_flops: Callable[[Callable[[Callable], object]], float]  # count_flops(generate) -> FLOPs of one generation
    reset: Callable[[], None] = lambda: None
    toca: toca_fx.ToCa | None = None
    held_bytes: Callable[[], int] | None = None  # bytes a peer's cache holds, after a generation
    settings: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext  # around the whole row


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "eager", "compile", "toca_fx", "sweep" or "peer"
    prepare: Callable[..., Prepared] = field(repr=False)  # (workload, compiler) -> Prepared
    note: str = ""
    curve: str = ""  # the rows that the plot joins into one line: one method with one knob varied

    @property
    def family(self) -> str:
        return self.curve or self.name


class FlopTally:
    """An inner compiler for toca_fx that runs each graph eagerly and, while ``counting``, adds up its FLOPs
    (FlopCounterMode entered inside the compiled frame, where Dynamo no longer looks)."""

    def __init__(self):
        self.total = 0
        self.counting = False

    def __call__(self, gm, example_inputs):
        def run(*args):
            if not self.counting:
                return gm.forward(*args)
            with flop_counter() as mode:
                out = gm.forward(*args)
            self.total += mode.get_total_flops()
            return out

        return run

    def count(self, generate_once: Callable[[], object]) -> float:
        self.total, self.counting = 0, True
        try:
            generate_once()
        finally:
            self.counting = False
        return float(self.total)


def count_eager(run: Callable, reset: Callable[[], None] = lambda: None):
    """FLOPs of one generation of an eager callable."""

    def count(generate) -> float:
        reset()
        with flop_counter() as mode:
            generate(run)
        return float(mode.get_total_flops())

    return count


def _plain_compile_backend(compiler: str) -> str:
    return "inductor" if compiler == "inductor" else "eager"


def eager() -> Method:
    def prepare(workload, compiler):
        return Prepared(workload.model, count_eager(workload.model))

    return Method("eager (uncached)", "eager", prepare)


def plain_compile() -> Method:
    def prepare(workload, compiler):
        compiled = torch.compile(workload.model, backend=_plain_compile_backend(compiler), dynamic=False)
        return Prepared(compiled, count_eager(workload.model))

    return Method("torch.compile", "compile", prepare, "the speed and compile-time baseline")


def toca(name: str, kind: str, preset: str, note: str = "", curve: str = "", **overrides) -> Method:
    def prepare(workload, compiler):
        model = workload.model
        config = ToCaConfig.preset(preset, num_steps=workload.num_steps, compiler=compiler, **overrides)
        if compiler == "eager":  # one compile serves both: the tally runs each graph as "eager" would
            tally = FlopTally()
            backend = toca_fx.ToCa(config, inner_compiler=tally)
            compiled = torch.compile(model, backend=backend, dynamic=False)

            def count(generate) -> float:
                backend.reset()
                return tally.count(lambda: generate(compiled))

        else:  # an eager twin: FlopCounterMode sees no ops inside Inductor's kernels
            backend = toca_fx.ToCa(config)
            compiled = torch.compile(model, backend=backend, dynamic=False)

            def count(generate) -> float:
                tally = FlopTally()
                twin = toca_fx.ToCa(config, inner_compiler=tally)
                return tally.count(lambda: generate(torch.compile(model, backend=twin, dynamic=False)))

        return Prepared(compiled, count, reset=backend.reset, toca=backend)

    return Method(name, kind, prepare, note, curve)


def _hooked_peer(name: str, curve: str, note: str, hooked_copy, reset, held_bytes) -> Method:
    """A peer that hooks a copy of the model (``hooked_copy(workload, timestep)``), run under plain torch.compile
    (Dynamo recompiles on the hooks' Python state: allowed up to a few graphs per step); eager when ``compiler``
    is "eager". ``reset(transformer, num_steps)`` starts a generation; ``held_bytes(transformer)`` sizes the cache."""

    def prepare(workload, compiler):
        model, num_steps, timestep = workload.model, workload.num_steps, peers.Timestep()
        hooked = hooked_copy(workload, timestep)
        transformer = peers.diffusers_transformer(hooked)
        # Smoke runs (eager inner compilers) skip Dynamo here: its recompiles on hook state cost the most time.
        compiled = hooked if compiler == "eager" else torch.compile(hooked, dynamic=False)

        def reset_generation():
            reset(transformer, num_steps)

        count = count_eager(peers.TimestepProbe(hooked, model, timestep), reset_generation)
        run = peers.TimestepProbe(compiled, model, timestep)
        limit = 4 * num_steps + 8

        def settings():
            return recompile_limit(limit)

        return Prepared(
            run, count, reset=reset_generation, held_bytes=lambda: held_bytes(transformer), settings=settings
        )

    return Method(name, "peer", prepare, note, curve)


def peer(hook: peers.Hook) -> Method:
    """A point of one of diffusers' cache hooks."""

    def hooked(workload, timestep):
        def calibrate(copy):
            return workload.sample(peers.TimestepProbe(copy, workload.model, timestep), workload.batches[0])

        return peers.hooked_copy(workload.model, hook, workload.num_steps, timestep, calibrate)

    return _hooked_peer(
        f"diffusers {hook.name}",
        f"diffusers {hook.curve}",
        hook.settings,
        hooked,
        lambda transformer, num_steps: peers.reset_hooks(transformer),
        peers.held_bytes,
    )


def cache_dit_peer(setting: cache_dit_peers.Setting) -> Method:
    """A cache-dit configuration."""
    return _hooked_peer(
        setting.name,
        setting.curve,
        setting.note,
        lambda workload, timestep: cache_dit_peers.cached_copy(workload.model, setting, workload.num_steps),
        cache_dit_peers.reset,
        cache_dit_peers.held_bytes,
    )


def sweep(preset: str, intervals, ratios) -> list[Method]:
    """toca_fx's curve: the faithful preset with ``interval`` × ``fresh_ratio`` varied."""
    return [
        toca(f"toca_fx N={n} r={r:g}", "sweep", preset, curve="toca_fx sweep", interval=n, fresh_ratio=r)
        for n in intervals
        for r in ratios
        if (n, r) != (ToCaConfig.preset(preset).interval, ToCaConfig.preset(preset).fresh_ratio)
    ]
