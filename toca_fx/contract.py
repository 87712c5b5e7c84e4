"""The contract between the rewrite passes and the runtime: what a site is, what it does at one
step, and the names of the state threaded through the compiled variants.

    analysis ── SitePolicy per site ──▶ step_mode(policy, k, N) ──▶ StepMode per site
                                                                     │
    rewrite builds a variant for a tuple of StepModes  ◀─────────────┘
    runtime feeds it the StateKeys it reads, and keeps the StateKeys it writes
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SitePolicy(StrEnum):
    """What the analysis proved a site may do between full steps."""

    PARTIAL = "partial"  # token-local up to its cache: fresh tokens are recomputed, the rest read from the cache
    REUSE = "reuse"  # mixes tokens (or shares its core with a reused site): read whole from the cache
    FULL = "full"  # not proven either way: recomputed exactly at every step


class StepMode(StrEnum):
    """What a site does at one step."""

    COMPUTE = "compute"  # every token computed; a cached site also refreshes its cache
    PARTIAL = "partial"  # k fresh tokens gathered, computed and scattered into the cache
    REUSE = "reuse"  # the cache stands in for the branch, which does not run


def step_mode(policy: SitePolicy, k: int, num_tokens: int, partial_at_all_tokens: bool = False) -> StepMode:
    """What a site of ``policy`` does at a partial step that asks it to refresh ``k`` of its tokens.

    A reused site runs all its tokens or none. ``partial_at_all_tokens``: a partial site asked for
    all its tokens keeps its gather and scatter (exact where the cache loses nothing), so that one
    compiled variant with k symbolic also serves the steps where its ratio clamps to 1.
    """
    if policy is SitePolicy.FULL or k >= num_tokens and not (partial_at_all_tokens and policy is SitePolicy.PARTIAL):
        return StepMode.COMPUTE
    if k == 0 or policy is SitePolicy.REUSE:
        return StepMode.REUSE
    return StepMode.PARTIAL


def tokens_computed(mode: StepMode, k: int, num_tokens: int) -> int:
    """How many of a site's tokens its branch runs on in ``mode``."""
    return {StepMode.COMPUTE: num_tokens, StepMode.PARTIAL: k, StepMode.REUSE: 0}[mode]


class StateKind(StrEnum):
    """Kinds of state a variant reads (extra placeholders) and writes (extra outputs)."""

    CACHE = "cache"  # a site's branch output before its gate, (B, N, C)
    INTERIOR = "interior"  # a mixed site's token-mixing values that meet token-local work
    COUNTER = "counter"  # steps since each token of a partial site was recomputed, (B, N)
    SCORE = "score"  # a block's token score from its last full step, (B, N)
    TOKENS = "tokens"  # k: the int number of fresh tokens of a partial site
    CONTEXT = "context"  # a step-invariant context value from the last full step
    DERIVATIVE = "derivative"  # a site's cache's finite-difference derivative (part: order - 1), like the cache
    CLOCK = "clock"  # (full steps so far, steps since the last full step), float32: forecasting's time


@dataclass(frozen=True)
class StateKey:
    """One piece of state: its kind, the site (layer for a score, value for context) it belongs
    to, and which of a site's interior values it is."""

    kind: StateKind
    index: int
    part: int = 0

    @property
    def name(self) -> str:
        """The placeholder name in a variant's graph."""
        suffix = f"_{self.part}" if self.kind in (StateKind.INTERIOR, StateKind.DERIVATIVE) else ""
        return f"toca_{self.kind}_{self.index}{suffix}"

    @property
    def is_cache(self) -> bool:
        """Whether it holds cached activations (counted as cache memory)."""
        return self.kind in (StateKind.CACHE, StateKind.INTERIOR, StateKind.DERIVATIVE)
