"""Choose a preset from a transformer's structure: the kinds of sites the analysis found.

Rules are tried in order; the first whose preset exists and whose test holds wins. A preset
plugs in by adding a rule that describes the structure it was tuned for, never a class name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .config import DEFAULT_PRESET as DEFAULT
from .config import PRESETS


def _kinds(sites) -> set[str]:
    return {site.kind for site in sites}


def _stream_lengths(sites) -> set[int]:
    return {site.num_tokens for site in sites}


def _cross_attention(sites) -> bool:
    return "cross_attention" in _kinds(sites)


def _cross_attention_over_several_streams(sites) -> bool:
    return _cross_attention(sites) and len(_stream_lengths(sites)) > 1


def _joint_streams(sites) -> bool:
    return bool(_kinds(sites) & {"joint_attention", "mixed"}) or len(_stream_lengths(sites)) > 1


def _self_attention_and_mlp(sites) -> bool:
    return bool(sites) and _kinds(sites) <= {"self_attention", "mlp"} and len(_stream_lengths(sites)) == 1


# (preset, structure test, the structure in words), most specific first.
RULES: tuple[tuple[str, Callable[[Sequence], bool], str], ...] = (
    ("opensora", _cross_attention_over_several_streams, "cross-attention over spatial and temporal token streams"),
    ("pixart-alpha", _cross_attention, "cross-attention from the image tokens to a context"),
    ("flux", _joint_streams, "joint attention over several token streams, or parallel attention+MLP blocks"),
    ("dit", _self_attention_and_mlp, "self-attention and MLP blocks over one token stream"),
)


def preset_for(sites: Sequence) -> tuple[str, str]:
    """(preset name, why) for a region's sites; the default preset when no rule applies."""
    for name, test, structure in RULES:
        if name in PRESETS and test(sites):
            return name, structure
    if not sites:
        return DEFAULT, "no sites found: default preset"
    return DEFAULT, f"no preset matches site kinds {sorted(_kinds(sites))}: default preset"
