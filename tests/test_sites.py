"""Site discovery: the expected residual branches, kinds and policies, found from the graph alone."""

import logging
from collections import Counter

import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st

from harness import compile_toca, dit_case, hand_case, pixart_case, sample, sd3_case


def sites_per_block(toca):
    blocks = {}
    for site in toca.sites:
        blocks.setdefault(site.block, Counter())[(site.kind, site.policy)] += 1
    return blocks


EXPECTED_PER_BLOCK = {
    "pixart": Counter({("self_attention", "reuse"): 1, ("cross_attention", "partial"): 1, ("mlp", "partial"): 1}),
    "dit": Counter({("self_attention", "reuse"): 1, ("mlp", "partial"): 1}),
}


@given(
    family=st.sampled_from(sorted(EXPECTED_PER_BLOCK)),
    layers=st.integers(1, 4),
    heads=st.integers(1, 3),
    head_dim=st.sampled_from([4, 8]),
)
def test_diffusers_blocks_have_the_expected_sites(family, layers, heads, head_dim):
    case = (pixart_case if family == "pixart" else dit_case)(layers, heads, head_dim)
    toca, model = compile_toca(case, compiler="eager", num_steps=2)
    sample(case, model, 1)
    blocks = sites_per_block(toca)
    assert sorted(blocks) == [f"transformer_blocks.{i}" for i in range(layers)]
    assert all(counts == EXPECTED_PER_BLOCK[family] for counts in blocks.values())


def test_hand_written_dit_with_fused_qkv_and_literal_token_counts():
    case = hand_case(layers=3)
    toca, model = compile_toca(case, compiler="eager", num_steps=2)
    sample(case, model, 1)
    kinds = Counter((s.kind, s.policy) for s in toca.sites)
    assert kinds == Counter({("self_attention", "reuse"): 3, ("mlp", "partial"): 3, ("cross_attention", "partial"): 3})
    cross = [s for s in toca.sites if s.kind == "cross_attention"]
    assert all(s.flow.token_args for s in cross), "the literal token count in reshape(b, n, ...) was not found"


def test_gate_is_peeled_off_the_cache():
    case = pixart_case(layers=1)
    toca, model = compile_toca(case, compiler="eager", num_steps=2)
    sample(case, model, 1)
    for site in toca.sites:
        assert "gate" not in site.output.name and site.output is not site.residual
        tail = site.residual.args[0] if site.residual.args[1] is site.stream else site.residual.args[1]
        assert tail is not site.output or site.kind == "cross_attention"  # PixArt's cross-attention has no gate


def test_graph_breaks_give_several_handled_regions():
    case = hand_case(layers=2, graph_break=True)
    toca, model = compile_toca(case, compiler="eager", num_steps=4)
    sample(case, model, 3)
    assert toca.stats["regions"] >= 2
    assert {s.kind for s in toca.sites} == {"self_attention", "mlp", "cross_attention"}
    assert toca.stats["partial_steps"] >= 1


def test_model_without_sites_falls_back_with_one_warning(caplog):
    model = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 8)).eval()
    torch._dynamo.reset()
    import toca_fx

    toca = toca_fx.ToCa(compiler="eager")
    compiled = torch.compile(model, backend=toca)
    x = torch.randn(2, 5, 8)
    with caplog.at_level(logging.WARNING, logger="toca_fx"), torch.no_grad():
        assert torch.equal(compiled(x), model(x))
        assert torch.equal(compiled(x), model(x))
    warnings = [r for r in caplog.records if r.name == "toca_fx" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "nothing cacheable" in warnings[0].getMessage()
    assert "runs uncached" in warnings[0].getMessage()
    assert toca.sites == [] and toca.fallbacks


def test_streams_of_different_lengths_get_their_own_token_grid():
    """SD3: image (64 tokens) and text (5 tokens) streams; only the image stream has a 2-D grid."""
    case = sd3_case()
    reference = sample(case, case.model, 6)
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=6)
    outputs = sample(case, model, 6)
    region = toca.regions[0]
    for index, site in enumerate(region.analysis.sites):
        grid = region.choices.grids.get(index)
        assert grid is None or grid[0] * grid[1] == site.num_tokens
    assert any(s.num_tokens == 5 and s.policy == "partial" for s in toca.sites)
    assert toca.stats["partial_steps"] == 4
    assert all(torch.isfinite(o).all() for o in outputs)
    assert torch.allclose(outputs[0], reference[0], atol=1e-5)
    assert max((o - r).norm() / r.norm() for o, r in zip(outputs, reference)) < 0.05
