"""``toca_fx.explain(model, *inputs, **kwargs)``: what toca_fx finds in a model and what it leaves
uncached, from one traced forward (no generation is run, the model is not changed)."""

from __future__ import annotations

import torch
from tabulate import tabulate

from .backend import ToCa
from .config import ToCaConfig
from .contract import SitePolicy
from .cost import flops_shares, predicted_flops


def explain(
    model: torch.nn.Module,
    *example_inputs,
    config: ToCaConfig | str | None = None,
    num_steps: int = 20,
    **example_kwargs,
) -> str:
    """Sites found, their policies and cache sizes, where the FLOPs are, and every reason a part
    of the model runs uncached. ``config``: a config or preset (None: chosen from the structure);
    ``num_steps``: the generation length the ratio and FLOPs figures assume."""
    if isinstance(config, ToCaConfig):
        toca = ToCa(config, num_steps=num_steps, compiler="eager")
    else:
        toca = ToCa(config or "auto", num_steps=num_steps, compiler="eager")
    with torch.no_grad():
        torch.compile(model, backend=toca, dynamic=False)(*example_inputs, **example_kwargs)
    preset = f"preset {toca.preset[0]!r} chosen: {toca.preset[1]}" if toca.preset else "config as given"
    lines = [f"toca_fx.explain: {type(model).__name__}: {len(toca.regions)} cached graph(s); {preset}", toca.report()]
    lines += _flops_table(toca, num_steps)
    lines += _uncached(toca)
    return "\n".join(lines)


def _flops_table(toca: ToCa, num_steps: int) -> list[str]:
    """Share of a full step's FLOPs by what a partial step does with them."""
    shares, total = flops_shares(toca.regions)
    if not total:
        return []
    rows = [[what, f"{flops / total:.1%}"] for what, flops in sorted(shares.items())]
    uncached, cached = predicted_flops(toca.regions, num_steps)
    ideal = f"FLOPs-ideal speedup over {num_steps} steps: {uncached / cached:.2f}x" if cached else ""
    return ["", tabulate(rows, headers=["FLOPs of a full step", "share"], tablefmt="github"), ideal]


def _uncached(toca: ToCa) -> list[str]:
    reasons = [
        f"- {s.name}: computed in full at every step: {s.reason}" for s in toca.sites if s.policy is SitePolicy.FULL
    ]
    reasons += [f"- a graph runs uncached: {reason}" for reason in toca.fallbacks]
    reasons += [
        f"- region {r} runs uncached: {region.failure}" for r, region in enumerate(toca.regions) if region.failure
    ]
    notes = [f"- region {r}: {note}" for r, region in enumerate(toca.regions) for note in region.choices.notes]
    notes += [f"- region {r}: {region.choices.grid_note}" for r, region in enumerate(toca.regions)]
    out = ["", "left uncached:", *(reasons or ["- nothing: every site is partial or reused between full steps"])]
    out += ["", "reused whole, though it does not mix tokens (a partial step could recompute it if proven):"]
    out += [f"- {s.name}: {s.reason}" for s in toca.sites if s.fallback] or ["- none"]
    return out + ["", "notes:", *notes] if notes else out


class _Captured(Exception):
    def __init__(self, args, kwargs):
        super().__init__("transformer inputs captured")
        self.args, self.kwargs = args, kwargs


def explain_pipeline(pipe, call_kwargs: dict, config: ToCaConfig | str | None = None) -> str:
    """:func:`explain` for ``pipe.transformer``, on the inputs of the first transformer call of
    ``pipe(**call_kwargs)``: the pipeline stops there, before its first denoising step."""

    def capture(module, args, kwargs):
        raise _Captured(args, kwargs)

    hook = pipe.transformer.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        pipe(**call_kwargs)
    except _Captured as captured:
        inputs = captured
    else:
        raise RuntimeError(f"{type(pipe).__name__} finished without calling its transformer")
    finally:
        hook.remove()
    steps = call_kwargs.get("num_inference_steps") or 20
    return explain(pipe.transformer, *inputs.args, config=config, num_steps=steps, **inputs.kwargs)
