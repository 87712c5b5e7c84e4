"""Test harness: model cases with inputs, a small sampling loop, and a recording inner compiler."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.fx as fx
from torch.fx.node import map_arg

from toca_fx.passes.flops import flop_counter
from toca_fx.passes.graph import ValueRecorder

from zoo.case import Case, sample, timesteps
from zoo.checks import RECOMPUTE_ALL, compile_toca
from zoo.diffusers_models import dit_case, flux_case, pixart_case, sd3_case
from zoo.hand import hand_case

__all__ = [
    "RECOMPUTE_ALL",
    "compile_toca",
    "Case",
    "sample",
    "timesteps",
    "dit_case",
    "flux_case",
    "pixart_case",
    "sd3_case",
    "hand_case",
]


def slot_states(toca) -> list:
    """Every call slot's state the backend holds now, over its live generations."""
    return [state for generation in list(toca.clock.live) for state in generation.states.values()]


def held_bytes(toca) -> int:
    return sum(sum(region.held_bytes().values()) for region in toca.regions)


class Recorder:
    """Inner compiler that runs each variant eagerly and keeps every node value of the last call
    (use with ``self_check=False``: the self-check's own calls would be the last ones)."""

    def __init__(self):
        self.values: dict[str, object] = {}
        self.module: fx.GraphModule | None = None
        self.args: tuple = ()

    def __call__(self, gm: fx.GraphModule, example_inputs) -> Callable:
        def run(*args):
            interpreter = ValueRecorder(gm)
            out = interpreter.run(*args)
            self.values, self.module, self.args = interpreter.values, gm, args
            return out

        return run

    def nodes(self, role: str, site: int) -> list[fx.Node]:
        return [
            n
            for n in self.module.graph.nodes
            if n.meta.get("toca", {}).get("role") == role and n.meta["toca"].get("site") == site
        ]


def recompute_branch(site, values: dict[str, object], overrides: dict | None = None) -> torch.Tensor:
    """Run a site's original branch eagerly, on all tokens, with the stream and side values of a
    recorded call (``overrides``: the interior caches a mixed site reads instead of computing)."""
    env = {site.stream: values[site.stream.name], **(overrides or {})}
    for node in site.fresh_nodes():  # all tokens, through the same nodes a partial step runs
        args, kwargs = map_arg((node.args, node.kwargs), lambda n: env[n] if n in env else values[n.name])
        if node.op == "call_method":
            env[node] = getattr(args[0], node.target)(*args[1:], **kwargs)
        else:
            env[node] = node.target(*args, **kwargs)
    return env[site.output]


class FlopCounting:
    """Inner compiler that runs each variant eagerly and adds up its FLOPs (torch.utils.flop_counter)."""

    def __init__(self):
        self.total = 0

    def __call__(self, gm: fx.GraphModule, example_inputs) -> Callable:
        def run(*args):
            with flop_counter() as counter:
                out = gm(*args)
            self.total += counter.get_total_flops()
            return out

        return run
