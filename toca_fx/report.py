"""Tables for users: the conversion report."""

from __future__ import annotations

from tabulate import tabulate


def site_table(regions, num_steps: int | None) -> str:
    """One row per site: block, kind, policy, fraction of tokens recomputed at partial steps, cache bytes."""
    rows = []
    for r, region in enumerate(regions):
        plans = [p for p in region.schedule(num_steps) if not p.full] if num_steps and region.specs else []
        held = region.cache_bytes()
        for index, site in enumerate(region.analysis.sites):
            ratios = [p.fresh[index] / site.num_tokens for p in plans]
            ratio = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
            rows.append([r, site.block, site.kind, site.policy, ratio, held.get(index, 0), site.reason])
    headers = ["region", "block", "kind", "policy", "fresh ratio", "cache bytes", "note"]
    return tabulate(rows, headers=headers, tablefmt="github")
