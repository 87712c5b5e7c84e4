"""The model zoo: tiny transformers (random weights) that toca_fx must convert without per-model code.

Each entry builds a :class:`~zoo.case.Case` and states the sites its conversion must find,
as ``"kind/policy"`` counts over all graph regions. ``tests/test_zoo.py`` asserts them and
``python tests/coverage.py`` reports them in ``docs/COVERAGE.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import diffusers_models as dm
from . import hand
from .case import Case


@dataclass(frozen=True)
class ZooEntry:
    name: str
    build: Callable[[], Case]
    expected: dict[str, int]  # "kind/policy" -> number of sites over all regions
    source: str  # "diffusers" (the class of that name) or "hand-written"


def _entry(name, build, source="diffusers", **expected) -> ZooEntry:
    return ZooEntry(name, build, {k.replace("__", "/"): v for k, v in expected.items()}, source)


_HAND = "hand-written"
ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        _entry("DiT", dm.dit_case, self_attention__reuse=2, mlp__partial=2),
        _entry("PixArt", dm.pixart_case, self_attention__reuse=2, cross_attention__partial=2, mlp__partial=2),
        _entry("SD3", dm.sd3_case, joint_attention__reuse=3, mlp__partial=3),
        _entry("Flux", dm.flux_case, joint_attention__reuse=2, mlp__partial=2, mixed__partial=2),
        _entry("AuraFlow", dm.auraflow_case, mixed__partial=2, mixed__reuse=1),
        _entry("Sana", dm.sana_case, self_attention__reuse=2, cross_attention__partial=2, mlp__reuse=2),
        _entry("QwenImage", dm.qwenimage_case, joint_attention__reuse=4, mlp__partial=4),
        _entry("CogView4", dm.cogview4_case, joint_attention__full=4, mlp__partial=4),
        _entry("HunyuanDiT", dm.hunyuandit_case, self_attention__reuse=4, self_attention__full=4, mlp__partial=4),
        _entry("Lumina2", dm.lumina2_case, self_attention__reuse=4, mlp__partial=4),
        _entry(
            "StableAudio",
            dm.stableaudio_case,
            self_attention__reuse=2,
            cross_attention__partial=2,
            mlp__partial=2,
            mlp__full=2,
        ),
        _entry("Latte", dm.latte_case, self_attention__reuse=2, cross_attention__partial=1, mlp__partial=2),
        _entry("Allegro", dm.allegro_case, self_attention__reuse=2, cross_attention__partial=2, mlp__partial=2),
        _entry("CogVideoX", dm.cogvideox_case, joint_attention__reuse=4, mlp__partial=2, mlp__reuse=2),
        _entry(
            "HunyuanVideo",
            dm.hunyuanvideo_case,
            self_attention__reuse=1,
            joint_attention__reuse=2,
            mlp__partial=3,
            mixed__partial=1,
        ),
        _entry("Wan", dm.wan_case, self_attention__full=2, cross_attention__partial=2, mlp__partial=2),
        _entry("LTXVideo", dm.ltxvideo_case, self_attention__reuse=2, cross_attention__partial=2, mlp__partial=2),
        _entry("Mochi", dm.mochi_case, mlp__partial=3),
        _entry("Chroma", dm.chroma_case, joint_attention__reuse=2, mlp__partial=3, mixed__partial=2),
        _entry("CogView3Plus", dm.cogview3plus_case, joint_attention__reuse=4, mlp__partial=2, mlp__reuse=2),
        _entry("SkyReelsV2", dm.skyreelsv2_case, self_attention__full=2, cross_attention__partial=2, mlp__partial=2),
        _entry("HandDiT", hand.hand_case, _HAND, self_attention__reuse=2, cross_attention__partial=2, mlp__partial=2),
        _entry(
            "OpenSoraSTDiT",
            hand.opensora_case,
            _HAND,
            self_attention__reuse=4,
            cross_attention__partial=2,
            mlp__partial=2,
        ),
    ]
}
