"""The ToCa step schedule: which steps are full and how many tokens each site refreshes.

Everything here runs on the host before sampling, so the compiled model never has to
turn a device value into a Python int (no host syncs) and each step's shapes are known.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .config import SITE_KINDS, ToCaConfig, linear_factor


@dataclass(frozen=True)
class SiteSpec:
    """What the schedule needs to know about one cache site."""

    kind: str
    layer: int
    num_tokens: int

    def __post_init__(self) -> None:
        if self.kind not in SITE_KINDS:
            raise ValueError(f"SiteSpec.kind must be one of {SITE_KINDS}; got {self.kind!r}")
        if self.layer < 0 or self.num_tokens < 1:
            raise ValueError(f"SiteSpec needs layer >= 0 and num_tokens >= 1; got {self}")


@dataclass(frozen=True)
class StepPlan:
    """One sampling step: full or partial, and the fresh token count k of every site."""

    index: int
    full: bool
    progress: float
    fresh: tuple[int, ...]


def is_full_step(config: ToCaConfig, step: int, num_steps: int) -> bool:
    """Whether `step` (counted upward from 0) computes everything and refills the caches."""
    if config.full_steps is not None:
        return step in config.full_steps
    if config.interval == 1 or step < config.leading_full_steps:
        return True
    w = config.interval_step_weight
    interval = max(1, round(config.interval / (1 - w + 2 * w * step / num_steps)))
    counter = num_steps - 1 - step if config.count_down else step
    return counter % interval == 0


def site_ratio(config: ToCaConfig, progress: float, layer: int, num_layers: int, kind: str) -> float:
    """The fraction of a site's tokens to refresh: fresh_ratio * f_step * f_layer * f_module, clamped."""
    depth = layer / (num_layers - 1) if num_layers > 1 else 0.0
    f_step = linear_factor(config.step_weight, progress)
    f_layer = linear_factor(config.layer_weight, depth) - 1 + config.layer_center
    ratio = config.fresh_ratio * f_step * f_layer * config.kind_weight(kind)
    return min(max(ratio, 0.0), 1.0)


def fresh_count(ratio: float, num_tokens: int) -> int:
    """floor(ratio * num_tokens), tolerant of float error so that e.g. 0.29 * 100 gives 29."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1]; got {ratio!r}")
    return min(num_tokens, math.floor(ratio * num_tokens + 1e-9))


def build_schedule(
    config: ToCaConfig, num_steps: int, sites: Sequence[SiteSpec], num_layers: int | None = None
) -> tuple[StepPlan, ...]:
    """The plan of every step; a pure function of its arguments. ``num_layers``: the model's depth
    for the layer factor (default: the deepest site's layer + 1)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1; got {num_steps!r}")
    if config.full_steps is not None and num_steps != config.num_steps:
        raise ValueError(
            f"toca_fx: the calibrated schedule (full_steps) is for {config.num_steps} steps; this generation has "
            f"{num_steps}: calibrate for {num_steps} steps, or run {config.num_steps}"
        )
    num_layers = num_layers or max((site.layer for site in sites), default=0) + 1
    plans = []
    for step in range(num_steps):
        progress = _bucketed(step / num_steps, config.step_buckets)
        full = is_full_step(config, step, num_steps)
        fresh = tuple(
            site.num_tokens
            if full
            else fresh_count(site_ratio(config, progress, site.layer, num_layers, site.kind), site.num_tokens)
            for site in sites
        )
        plans.append(StepPlan(step, full, progress, fresh))
    return tuple(plans)


def _bucketed(progress: float, buckets: int) -> float:
    """Snap progress to its bucket centre so only `buckets` distinct partial plans exist."""
    if buckets == 0:
        return progress
    return (math.floor(progress * buckets) + 0.5) / buckets
