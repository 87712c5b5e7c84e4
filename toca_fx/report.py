"""Tables for users: the conversion report and the step schedule."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from .config import SITE_KINDS
from .cost import held_cache_bytes, site_cache_bytes
from .schedule import SiteSpec, StepPlan


def site_table(regions, num_steps: int | None) -> str:
    """One row per site: block, kind, policy, fraction of tokens recomputed at partial steps
    (over the schedule of ``num_steps``), cache bytes per call slot, and why a site is not partial."""
    rows = []
    for r, region in enumerate(regions):
        plans = [p for p in region.schedule(num_steps) if not p.full] if num_steps else []
        for index, site in enumerate(region.analysis.sites):
            ratios = [p.fresh[index] / site.num_tokens for p in plans]
            ratio = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
            cache = site_cache_bytes(site, region.config.cache_dtype)
            rows.append([r, site.block, site.kind, site.policy, ratio, cache, site.reason])
    headers = ["region", "block", "kind", "policy", "fresh ratio", "cache bytes/slot", "note"]
    failures = [f"\nregion {r} runs uncached: {region.failure}" for r, region in enumerate(regions) if region.failure]
    table = tabulate(rows, headers=headers, tablefmt="github")
    return table + f"\ncache held now: {held_cache_bytes(regions)} bytes" + "".join(failures)


def schedule_table(plans: Sequence[StepPlan], sites: Sequence[SiteSpec]) -> str:
    """A report table: per step, full or partial, the share of tokens refreshed, and the k range per site kind."""
    kinds = [kind for kind in SITE_KINDS if any(site.kind == kind for site in sites)]
    total_tokens = sum(site.num_tokens for site in sites)
    rows = []
    for plan in plans:
        row = [plan.index, "full" if plan.full else "partial", f"{plan.progress:.3f}"]
        row.append(f"{sum(plan.fresh) / total_tokens:.1%}" if total_tokens else "-")
        for kind in kinds:
            ks = [k for k, site in zip(plan.fresh, sites) if site.kind == kind]
            row.append(str(min(ks)) if min(ks) == max(ks) else f"{min(ks)}-{max(ks)}")
        rows.append(row)
    headers = ["step", "type", "progress", "fresh tokens"] + [f"k {kind}" for kind in kinds]
    return tabulate(rows, headers=headers)
