"""Tables for users: the conversion report."""

from __future__ import annotations

from tabulate import tabulate

from .passes.graph import example_value


def _cache_bytes(site, dtype) -> int:
    """Bytes one call slot holds for a site: its output cache and any interior caches."""
    values = [example_value(site.output), *map(example_value, site.interior)]
    itemsize = dtype.itemsize if dtype is not None else values[0].element_size()
    return 0 if site.policy == "full" else sum(v.numel() for v in values) * itemsize


def site_table(regions, num_steps: int | None) -> str:
    """One row per site: block, kind, policy, fraction of tokens recomputed at partial steps
    (over the schedule of ``num_steps``), cache bytes per call slot, and why a site is not partial."""
    rows = []
    for r, region in enumerate(regions):
        plans = [p for p in region.schedule(num_steps) if not p.full] if num_steps else []
        for index, site in enumerate(region.analysis.sites):
            ratios = [p.fresh[index] / site.num_tokens for p in plans]
            ratio = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
            rows.append(
                [
                    r,
                    site.block,
                    site.kind,
                    site.policy,
                    ratio,
                    _cache_bytes(site, region.config.cache_dtype),
                    site.reason,
                ]
            )
    headers = ["region", "block", "kind", "policy", "fresh ratio", "cache bytes/slot", "note"]
    held = sum(sum(region.cache_bytes().values()) for region in regions)
    failures = [f"\nregion {r} runs uncached: {region.failure}" for r, region in enumerate(regions) if region.failure]
    return tabulate(rows, headers=headers, tablefmt="github") + f"\ncache held now: {held} bytes" + "".join(failures)
