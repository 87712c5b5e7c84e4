"""What a conversion costs, computed off the hot path: FLOPs per generation as the schedule predicts
them, and cache bytes. ``report``, ``explain``, the benchmark and the tests all read them here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .contract import SitePolicy
from .lowering import example_value
from .passes.flops import node_flops, site_costs
from .passes.rewrite import build_full
from .schedule import SiteSpec, StepPlan


def site_cache_bytes(site, dtype) -> int:
    """Bytes one call slot holds for a site: its output cache and any interior caches."""
    if site.policy is SitePolicy.FULL:
        return 0
    values = [example_value(site.output), *map(example_value, site.interior)]
    itemsize = dtype.itemsize if dtype is not None else values[0].element_size()
    return sum(v.numel() for v in values) * itemsize


def held_cache_bytes(regions) -> int:
    """Bytes of cache the regions hold now, over every call slot."""
    return sum(sum(region.held_bytes().values()) for region in regions)


def predicted_flops(regions, num_steps: int) -> tuple[float, float]:
    """(uncached, ToCa) FLOPs of a ``num_steps`` generation of every region, from the schedule table
    and per-site costs, with partial steps reusing every context value."""
    pairs = [_region_flops(region, num_steps) for region in regions]
    return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


def _region_flops(region, num_steps: int) -> tuple[float, float]:
    context = region.analysis.context
    base, token, context_flops = site_costs(region.gm, region.analysis.sites, context.dropped)
    full = build_full(region.gm, region.analysis, region.choices)
    inputs = [example_value(n) for n in region.gm.graph.nodes if n.op == "placeholder"]
    full = sum(node_flops(full.module, [*inputs, *(region.layout[key].allocate() for key in full.inputs)]).values())
    plans = region.schedule(num_steps)
    toca = schedule_flops(plans, full, base - context.dropped_flops, token, context_flops, region.specs)
    return float(base * num_steps), toca


def schedule_flops(
    plans: Sequence[StepPlan],
    full_flops: float,
    partial_base_flops: float,
    site_token_flops: Sequence[float],
    site_context_flops: Sequence[float],
    sites: Sequence[SiteSpec],
) -> float:
    """Total FLOPs over the plan. A full step costs ``full_flops`` (the model plus score
    bookkeeping); a partial step costs ``partial_base_flops`` (the model alone) less the skipped
    tokens' work, and a site with k == 0 also saves its context work (e.g. projecting text keys
    for cross-attention)."""
    total = 0.0
    for plan in plans:
        cost = full_flops if plan.full else partial_base_flops
        if not plan.full:
            for k, site, token_flops, context_flops in zip(
                plan.fresh, sites, site_token_flops, site_context_flops, strict=True
            ):
                cost -= token_flops * (1 - k / site.num_tokens)
                if k == 0:
                    cost -= context_flops
        total += cost
    return total


def flops_shares(regions) -> tuple[dict[str, float], float]:
    """FLOPs of one full step by what a partial step does with them, and their total."""
    shares: Counter = Counter()
    total = 0
    for region in regions:
        base, token, _ = site_costs(region.gm, region.analysis.sites)
        total += base
        for site, flops in zip(region.analysis.sites, token):
            shares[f"sites: {site.policy}"] += flops
        reused = region.analysis.context.dropped_flops
        shares["outside any site: step-invariant context, taken from the full step"] += reused
        shares["outside any site (always computed)"] += base - sum(token) - reused
    return dict(shares), total
