"""toca_fx.enable on real diffusers pipelines built from tiny components: DiT (class-conditional,
CFG batched), PixArt-α (cross-attention, CFG batched) and FLUX (flow matching, true CFG: two
transformer calls per step)."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pytest
import torch
from tiny_pipelines import run, tiny_dit_pipeline, tiny_flux_pipeline, tiny_pixart_pipeline

import toca_fx
from toca_fx import auto_preset, explain

from harness import RECOMPUTE_ALL, flux_case

BUILDERS = {
    "dit": lambda: tiny_dit_pipeline(modulation_scale=0.1),
    "pixart": tiny_pixart_pipeline,
    "flux": tiny_flux_pipeline,
}
PRESETS = {"dit": "dit", "pixart": "pixart-alpha", "flux": "flux"}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()


def build(name):
    pipe = BUILDERS[name]()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name", BUILDERS)
def test_every_step_full_equals_uncached_and_disable_restores(name):
    pipe = build(name)
    reference = run(pipe, 4)
    toca = toca_fx.enable(pipe, interval=1, compiler="eager")
    assert torch.allclose(run(pipe, 4), reference, atol=1e-5, rtol=1e-4)
    assert toca.stats["full_steps"] == 4 and toca.stats["regions"] == 1
    toca_fx.disable(pipe)
    assert type(pipe) is type(build(name)) and torch.equal(run(pipe, 4), reference)
    assert toca.stats["full_steps"] == 4  # the backend no longer runs


@pytest.mark.parametrize("name", BUILDERS)
def test_partial_steps_recomputing_every_token_equal_uncached(name):
    pipe = build(name)
    reference = run(pipe, 5)
    toca = toca_fx.enable(pipe, interval=3, leading_full_steps=1, compiler="eager", **RECOMPUTE_ALL)
    assert torch.allclose(run(pipe, 5), reference, atol=1e-5, rtol=1e-4)
    assert toca.stats["partial_steps"] >= 2


@pytest.mark.parametrize("name", BUILDERS)
def test_partial_run_close_repeatable_and_follows_step_count(name, caplog):
    pipe = build(name)
    reference, other_noise = run(pipe, 6), run(pipe, 6, seed=1)
    with caplog.at_level(logging.INFO, logger="toca_fx"):
        toca = toca_fx.enable(pipe, compiler="eager")
        first = run(pipe, 6)
    expected = PRESETS[name] if PRESETS[name] in toca_fx.PRESETS else "pixart-alpha"
    assert toca.preset[0] == expected
    assert f"preset {expected!r} chosen" in caplog.text
    assert toca.stats["partial_steps"] >= 2 and toca.num_steps == 6
    # Close: much nearer the uncached result than a generation from other noise is.
    assert torch.isfinite(first).all()
    assert (first - reference).norm() < 0.5 * (other_noise - reference).norm()
    assert torch.equal(run(pipe, 6), first)  # the same pipeline again
    fewer = run(pipe, 4)  # fewer steps on the same pipeline: as a fresh one does them
    assert toca.num_steps == 4
    fresh = build(name)
    toca_fx.enable(fresh, compiler="eager")
    assert torch.equal(run(fresh, 4), fewer)
    assert torch.equal(run(pipe, 6), first)


def test_explain_names_sites_and_why_parts_stay_uncached():
    case = flux_case()
    x = case.latents()
    text = explain(
        case.model,
        hidden_states=x.flatten(2).transpose(1, 2),
        encoder_hidden_states=torch.randn(1, 5, 32),
        pooled_projections=torch.randn(1, 32),
        timestep=torch.tensor([0.5]),
        img_ids=torch.zeros(16, 3),
        txt_ids=torch.zeros(5, 3),
        config="fora",
        num_steps=10,
    )
    assert "FluxTransformer2DModel: 1 cached graph(s); config as given" in text
    rows = ("| single_transformer_blocks.1 | mixed", "| transformer_blocks.0 | mlp", "| joint_attention | reuse")
    for row in rows:
        assert row in re.sub(" +", " ", text)
    assert "computed in full at every step" not in text  # joint attention is reused, not recomputed
    assert "FLOPs-ideal speedup over 10 steps" in text and "| sites: partial" in text

    plain = explain(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU()), torch.randn(2, 4, 8))
    assert "0 cached graph(s)" in plain
    assert "- a graph runs uncached: no residual branch over a token stream" in plain


def test_preset_rules_follow_structure_and_skip_missing_presets(monkeypatch):
    def sites(*kinds_and_tokens):
        return [SimpleNamespace(kind=kind, num_tokens=tokens) for kind, tokens in kinds_and_tokens]

    image = sites(("self_attention", 64), ("cross_attention", 64), ("mlp", 64))
    video = [*image, *sites(("self_attention", 4), ("mlp", 4))]  # a temporal stream of 4 frames
    joint = sites(("self_attention", 64), ("mlp", 64), ("mlp", 5))  # image and text streams
    parallel = sites(("mixed", 64))
    plain = sites(("self_attention", 64), ("mlp", 64))
    monkeypatch.setattr(auto_preset, "PRESETS", ("pixart-alpha", "dit", "flux", "opensora"))
    chosen = [auto_preset.preset_for(s)[0] for s in (image, video, joint, parallel, plain, [])]
    assert chosen == ["pixart-alpha", "opensora", "flux", "flux", "dit", "pixart-alpha"]
    monkeypatch.setattr(auto_preset, "PRESETS", ("pixart-alpha", "dit"))
    assert [auto_preset.preset_for(s)[0] for s in (video, joint)] == ["pixart-alpha", "pixart-alpha"]
    assert "default preset" in auto_preset.preset_for(joint)[1]
