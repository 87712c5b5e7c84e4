"""Test harness: model cases with inputs, a small sampling loop, and a recording inner compiler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch.fx.node import map_arg

from toca_fx.passes.graph import ValueRecorder

from models import CAPTION_CHANNELS, HandDiT, tiny_dit, tiny_flux, tiny_pixart, tiny_sd3

CONTEXT_TOKENS = 5


@dataclass
class Case:
    """A model and how to call it on latents ``x`` at timestep ``t``."""

    name: str
    model: torch.nn.Module
    call: Callable
    batch: int
    height: int
    width: int

    def latents(self, seed=0) -> torch.Tensor:
        return torch.randn(self.batch, 4, self.height, self.width, generator=torch.Generator().manual_seed(seed))


def pixart_case(layers=2, heads=2, head_dim=8, batch=2, grid=(4, 4), seed=0) -> Case:
    model = tiny_pixart(layers, heads, head_dim, seed=seed)
    context = torch.randn(batch, CONTEXT_TOKENS, CAPTION_CHANNELS, generator=torch.Generator().manual_seed(seed + 1))
    mask = torch.ones(batch, CONTEXT_TOKENS)
    mask[:, -1] = 0  # a padded caption token, as real prompts have

    def call(m, x, t):
        return m(x, encoder_hidden_states=context, timestep=t, encoder_attention_mask=mask).sample

    return Case("pixart", model, call, batch, 2 * grid[0], 2 * grid[1])


def dit_case(layers=2, heads=2, head_dim=8, batch=2, grid=(4, 4), seed=0) -> Case:
    model = tiny_dit(layers, heads, head_dim, seed=seed)
    labels = torch.arange(batch) % 10

    def call(m, x, t):
        return m(x, timestep=t, class_labels=labels).sample

    return Case("dit", model, call, batch, 2 * grid[0], 2 * grid[1])


def hand_case(layers=2, heads=2, batch=2, grid=(4, 4), graph_break=False, context=True, parallel=False, seed=0) -> Case:
    model = HandDiT(
        layers,
        dim=8 * heads,
        heads=heads,
        graph_break=graph_break,
        context_dim=6 if context else 0,
        parallel=parallel,
        seed=seed,
    )
    text = torch.randn(batch, CONTEXT_TOKENS, 6, generator=torch.Generator().manual_seed(seed + 1))

    def call(m, x, t):
        return m(x, t, text if context else None)

    return Case("parallel" if parallel else "hand", model, call, batch, 2 * grid[0], 2 * grid[1])


def sd3_case(layers=2, batch=2, seed=0) -> Case:
    """Two token streams of different lengths (image and text) with joint attention."""
    model = tiny_sd3(layers, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    text, pooled = (
        torch.randn(batch, CONTEXT_TOKENS, 16, generator=generator),
        torch.randn(batch, 16, generator=generator),
    )

    def call(m, x, t):
        return m(hidden_states=x, encoder_hidden_states=text, pooled_projections=pooled, timestep=t).sample

    return Case("sd3", model, call, batch, 8, 8)


def flux_case(batch=1, grid=(4, 4), seed=0) -> Case:
    """FLUX: packed latent tokens, RoPE, double-stream and single-stream (parallel) blocks."""
    model = tiny_flux(seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    text = torch.randn(batch, CONTEXT_TOKENS, 32, generator=generator)
    pooled = torch.randn(batch, 32, generator=generator)
    h, w = grid
    rows, cols = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    img_ids = torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3)
    txt_ids = torch.zeros(CONTEXT_TOKENS, 3)

    def call(m, x, t):
        tokens = x.flatten(2).transpose(1, 2)  # (B, h*w, 4): FLUX takes packed tokens
        out = m(
            hidden_states=tokens,
            encoder_hidden_states=text,
            pooled_projections=pooled,
            timestep=t / 1000,
            img_ids=img_ids,
            txt_ids=txt_ids,
        ).sample
        return out.transpose(1, 2).reshape(x.shape)

    return Case("flux", model, call, batch, h, w)


def timesteps(num_steps: int, batch: int) -> list[torch.Tensor]:
    values = [round(999 * (1 - i / max(1, num_steps - 1))) for i in range(num_steps)]
    return [torch.full((batch,), t) for t in values]


@torch.no_grad()
def sample(case: Case, model, num_steps: int, seed=0) -> list[torch.Tensor]:
    """A small Euler-like loop; returns the model output of every step."""
    x = case.latents(seed)
    outputs = []
    for t in timesteps(num_steps, case.batch):
        out = case.call(model, x, t)
        outputs.append(out)
        x = x - 0.05 * out[:, : x.shape[1]]
    return outputs


class Recorder:
    """Inner compiler that runs each variant eagerly and keeps every node value of the last call."""

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


def compile_toca(case: Case, config=None, **overrides):
    """A fresh Dynamo state, then the case's model compiled with a new ToCa backend."""
    import toca_fx

    torch._dynamo.reset()
    toca = toca_fx.ToCa(config, **overrides)
    return toca, torch.compile(case.model, backend=toca, dynamic=False)


# Every site recomputes every token at partial steps, self-attention included.
RECOMPUTE_ALL = dict(
    fresh_ratio=1.0,
    step_weight=0.0,
    layer_weight=0.0,
    self_attention_weight=1.0,
    cross_attention_weight=1.0,
    mlp_weight=1.0,
    joint_attention_weight=1.0,
    mixed_weight=1.0,
)


class FlopCounting:
    """Inner compiler that runs each variant eagerly and adds up its FLOPs (torch.utils.flop_counter)."""

    def __init__(self):
        self.total = 0

    def __call__(self, gm: fx.GraphModule, example_inputs) -> Callable:
        from torch.utils.flop_counter import FlopCounterMode

        def run(*args):
            with FlopCounterMode(display=False) as counter:
                out = gm(*args)
            self.total += counter.get_total_flops()
            return out

        return run
