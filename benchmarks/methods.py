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
import torch.nn as nn

import toca_fx
from benchmarks import peers
from toca_fx import ToCaConfig
from toca_fx.lowering import recompile_limit
from toca_fx.passes.flops import flop_counter


@dataclass
class Prepared:
    run: Callable  # what the sampler calls
    count_flops: Callable[[Callable[[Callable], object]], float]  # count_flops(generate) -> FLOPs of one generation
    reset: Callable[[], None] = lambda: None
    toca: toca_fx.ToCa | None = None
    transformer: nn.Module | None = None  # where diffusers hooks hold their state
    settings: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext  # around the whole row


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "eager", "compile", "toca_fx", "sweep" or "peer"
    prepare: Callable[..., Prepared] = field(repr=False)  # (workload, compiler) -> Prepared
    note: str = ""


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


def toca(name: str, kind: str, preset: str, note: str = "", **overrides) -> Method:
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

    return Method(name, kind, prepare, note)


def peer(hook: peers.Hook) -> Method:
    """A diffusers cache hook on a copy of the model, under plain torch.compile (Dynamo recompiles on the hooks'
    Python state: allowed up to a few graphs per step); eager when ``compiler`` is "eager"."""

    def prepare(workload, compiler):
        model, num_steps, timestep = workload.model, workload.num_steps, peers.Timestep()

        def calibrate(copy):
            return workload.sample(peers.TimestepProbe(copy, model, timestep), workload.batches[0])

        hooked = peers.hooked_copy(model, hook, num_steps, timestep, calibrate)
        transformer = peers.diffusers_transformer(hooked)
        # Smoke runs (eager inner compilers) skip Dynamo here: its recompiles on hook state cost the most time.
        compiled = hooked if compiler == "eager" else torch.compile(hooked, dynamic=False)

        def reset():
            peers.reset_hooks(transformer)

        count = count_eager(peers.TimestepProbe(hooked, model, timestep), reset)
        run = peers.TimestepProbe(compiled, model, timestep)
        limit = 4 * num_steps + 8

        def settings():
            return recompile_limit(limit)

        return Prepared(run, count, reset=reset, transformer=transformer, settings=settings)

    return Method(f"diffusers {hook.name}", "peer", prepare, hook.settings)


def sweep(preset: str, intervals, ratios) -> list[Method]:
    """toca_fx's curve: the faithful preset with ``interval`` × ``fresh_ratio`` varied."""
    return [
        toca(f"toca_fx N={n} r={r:g}", "sweep", preset, interval=n, fresh_ratio=r)
        for n in intervals
        for r in ratios
        if (n, r) != (ToCaConfig.preset(preset).interval, ToCaConfig.preset(preset).fresh_ratio)
    ]
