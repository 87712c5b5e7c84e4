"""The checks every zoo model goes through, shared by the tests and the coverage command.

One :func:`run_checks` call compiles a model three times with the fast inner compiler and
compares each run with the uncached model over the same steps:

* ``interval=1`` (every step full) and :data:`RECOMPUTE_ALL` (partial steps that recompute every
  token at every site) must be exact;
* the default preset's partial steps must stay finite and close to uncached.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

import toca_fx

from .case import Case, sample

# Every site recomputes every token at partial steps, self-attention included.
RECOMPUTE_ALL = dict(
    fresh_ratio=1.0,
    step_weight=0.0,
    layer_weight=0.0,
    layer_center=1.0,
    self_attention_weight=1.0,
    cross_attention_weight=1.0,
    mlp_weight=1.0,
    joint_attention_weight=1.0,
    mixed_weight=1.0,
)
STEPS = 6
FLOPS_STEPS = 20  # the generation length the FLOPs-ideal speedup is quoted for


def compile_toca(case: Case, config=None, **overrides):
    """A fresh Dynamo state, then the case's model compiled with a new ToCa backend."""
    torch._dynamo.reset()
    toca = toca_fx.ToCa(config, **overrides)
    return toca, torch.compile(case.model, backend=toca, dynamic=False)


def max_abs_diff(outputs: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Worst step's max |out - ref|, relative to the reference's largest magnitude where that is above 1."""
    return max(float((o - r).abs().max() / max(1.0, float(r.abs().max()))) for o, r in zip(outputs, reference))


def relative_error(outputs: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Worst step's ||out - ref|| / ||ref|| (absolute where the reference is all zeros, as the
    output of a model with a zero-initialised last layer is)."""
    return max(float((o - r).norm() / (r.norm() if r.norm() > 0 else 1)) for o, r in zip(outputs, reference))


@dataclass
class Checks:
    """What one zoo model's three compiled runs showed."""

    sites: Counter  # "kind/policy" -> count
    blocks: dict[str, Counter]  # block -> "kind/policy" -> count
    reasons: list[str]  # why each site recomputed at every step (policy full) is
    not_partial: list[str]  # why each site reused for another reason than mixing tokens is not partial
    regions: int
    interval_one_diff: float  # max |toca - uncached| with interval=1
    recompute_all_diff: float  # max |toca - uncached| with every token recomputed at partial steps
    recompute_all_partial_steps: int
    default_error: float  # worst-step relative error of the default preset
    default_finite: bool
    default_partial_steps: int
    flops_speedup: float  # uncached / ToCa FLOPs over FLOPS_STEPS steps at the default preset (0: not run)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # regions that fell back to uncached (self-check, errors)

    def blocks_with(self, *policies: str) -> int:
        return sum(any(key.endswith(policies) for key in counts) for counts in self.blocks.values())

    @property
    def cached_in_every_block(self) -> bool:
        """A partial or reused site in every block."""
        return bool(self.blocks) and self.blocks_with("/partial", "/reuse") == len(self.blocks)


def generate(case: Case, toca, model, steps: int) -> list[torch.Tensor]:
    """One generation whose steps the loop counts, as a pipeline under ``toca_fx.enable`` does."""
    with toca.generation(num_steps=steps, manual_steps=True) as generation:
        return sample(case, model, steps, generation=generation)


def run_checks(case: Case, compiler: str = "eager", steps: int = STEPS, flops: bool = True) -> Checks:
    """Compile ``case`` three times (interval 1, every token recomputed, default preset) and compare
    each run with the uncached model; ``flops=False`` skips the FLOPs-ideal speedup (slow)."""
    reference = sample(case, case.model, steps)
    failures = []

    def run(**overrides):
        toca, model = compile_toca(case, compiler=compiler, **overrides)
        outputs = generate(case, toca, model, steps)
        failures.extend(region.failure for region in toca.regions if region.failure)
        return toca, outputs

    interval_one = max_abs_diff(run(interval=1)[1], reference)
    toca, outputs = run(interval=3, **RECOMPUTE_ALL)
    recompute_all, recompute_steps = max_abs_diff(outputs, reference), toca.stats["partial_steps"]
    toca, outputs = run()
    uncached, cached = toca.predicted_flops(FLOPS_STEPS) if flops else (0.0, 0.0)
    blocks: dict[str, Counter] = {}
    for site in toca.sites:
        if site.block:  # residual adds at the model's root are not transformer blocks
            blocks.setdefault(site.block, Counter())[f"{site.kind}/{site.policy}"] += 1
    return Checks(
        sites=Counter(f"{s.kind}/{s.policy}" for s in toca.sites),
        blocks=blocks,
        reasons=[f"{s.block or '<root>'}:{s.kind}: {s.reason}" for s in toca.sites if s.policy == "full"],
        not_partial=[s.reason for s in toca.sites if s.fallback],
        regions=toca.stats["regions"],
        interval_one_diff=interval_one,
        recompute_all_diff=recompute_all,
        recompute_all_partial_steps=recompute_steps,
        default_error=relative_error(outputs, reference),
        default_finite=all(bool(torch.isfinite(o).all()) for o in outputs),
        default_partial_steps=toca.stats["partial_steps"],
        flops_speedup=uncached / cached if cached else 0.0,
        warnings=list(toca.fallbacks),
        failures=failures,
    )
