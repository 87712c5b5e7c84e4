"""Partial steps: fresh tokens are computed exactly, and the selection is well formed."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from toca_fx.contract import StepMode
from toca_fx.passes.rewrite import step_modes
from toca_fx.runtime.variants import FULL_VARIANT
from toca_fx.selection import gather_tokens

from harness import RECOMPUTE_ALL, Recorder, compile_toca, flux_case, recompute_branch, sample, timesteps
from strategies import cases

# Every partial site refreshes floor(0.3 N) >= 1 of its N >= 4 tokens, and never all of them.
STRICTLY_PARTIAL = dict(fresh_ratio=0.3, step_weight=0.0, layer_weight=0.0, mlp_weight=1.0, mixed_weight=1.0)


def partial_step(case, cfg_shared=True, **overrides):
    """Run a full and then a partial step with a recording inner compiler."""
    recorder = Recorder()
    toca, model = compile_toca(
        case,
        "pixart-alpha",
        inner_compiler=recorder,
        self_check=False,
        num_steps=10,
        cfg_shared=cfg_shared,
        step_buckets=0,
        **overrides,
    )
    sample(case, model, 2)
    return toca, recorder


def assert_fresh_tokens_exact(toca, recorder):
    """Every site that ran partially in the recorded call: its fresh tokens equal an eager recompute
    of the branch on the same inputs (a mixed site's recompute reads the same interior cache, and
    every site the context values the partial step took from the full step)."""
    region = toca.regions[-1]  # with a graph break, the last region holds the last blocks
    context = {
        node: recorder.values[f"toca_context_{j}"]
        for j, node in enumerate(region.analysis.context.values)
        if f"toca_context_{j}" in recorder.values
    }
    checked = 0
    for index, site in enumerate(region.analysis.sites):
        selects = recorder.nodes("select", index)
        if not selects:
            continue
        idx = recorder.values[selects[0].name]
        fresh = recorder.values[recorder.nodes("scatter", index)[0].args[2].name]
        interior = {node: recorder.values[f"toca_interior_{index}_{j}"] for j, node in enumerate(site.interior)}
        recomputed = recompute_branch(site, recorder.values, context | interior)
        expected = gather_tokens(recomputed, idx, site.flow.dims[site.output], site.batch_axis)
        assert 0 < idx.shape[1] == fresh.shape[site.flow.dims[site.output]], site.name  # never vacuous
        assert torch.allclose(fresh, expected, atol=1e-5, rtol=1e-5), site.name
        checked += 1
    modes = step_modes(region.analysis.sites, region.config, region.plan(1, toca.num_steps).fresh)
    assert checked == modes.count(StepMode.PARTIAL)
    return checked


@given(case=cases(), cfg=st.booleans(), score=st.sampled_from(["attention", "cross_entropy", "random"]))
def test_fresh_tokens_equal_eager_recompute(case, cfg, score):
    toca, recorder = partial_step(case, cfg_shared=cfg, score=score, cross_attention_weight=1.0, **STRICTLY_PARTIAL)
    assert toca.stats["partial_steps"] >= 1
    assert assert_fresh_tokens_exact(toca, recorder) > 0


@given(case=cases(), cfg=st.booleans())
def test_selection_invariants(case, cfg):
    toca, recorder = partial_step(case, cfg_shared=cfg)
    region = toca.regions[-1]
    plan = region.plan(1, toca.num_steps)
    for index, site in enumerate(region.analysis.sites):
        for select in recorder.nodes("select", index):
            idx = recorder.values[select.name]
            batch, n = idx.shape[0], site.num_tokens
            assert idx.shape == (batch, plan.fresh[index])
            assert idx.dtype == torch.int64 and bool((idx >= 0).all()) and bool((idx < n).all())
            for row in idx:
                assert row.unique().numel() == row.numel()
            if cfg and batch % 2 == 0:
                assert torch.equal(idx[: batch // 2], idx[batch // 2 :])


@given(case=cases())
def test_full_variant_equals_original_graph(case):
    recorder = Recorder()
    toca, model = compile_toca(case, "pixart-alpha", inner_compiler=recorder, self_check=False, num_steps=10)
    sample(case, model, 1)
    region = toca.regions[-1]
    variant = region.variants.compiled[FULL_VARIANT][0]
    outputs = recorder.values[next(n for n in recorder.module.graph.nodes if n.op == "output").name]
    model_inputs = sum(n.op == "placeholder" for n in region.gm.graph.nodes)
    original = region.gm(*recorder.args[:model_inputs])
    assert len(outputs) == len(original)
    for ours, theirs in zip(outputs, original):
        assert torch.equal(ours, theirs)
    assert set(variant.writes) == set(region.layout)  # a full step fills every state buffer


def test_flux_single_stream_blocks_are_mixed_and_exact():
    """FLUX single-stream blocks: attention rows (with RoPE) from the cache, MLP and merge on fresh tokens."""
    case = flux_case()
    reference = sample(case, case.model, 4)
    toca, model = compile_toca(case, compiler="eager", num_steps=4, **RECOMPUTE_ALL)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(sample(case, model, 4), reference))
    single = [s for s in toca.sites if s.block.startswith("single_transformer_blocks")]
    assert [(s.kind, s.policy) for s in single] == [("mixed", "partial")] * 2

    toca, recorder = partial_step(case, cfg_shared=False)
    assert assert_fresh_tokens_exact(toca, recorder) > 0


def test_state_buffers_keep_their_storage_across_steps():
    """Caches, counters and scores are written in place: each buffer's address is the same at every
    step (what a captured CUDA graph replays against), and a step allocates no new state."""
    case = flux_case()
    toca, model = compile_toca(case, compiler="eager", num_steps=8, interval=3, **STRICTLY_PARTIAL)
    addresses = []
    x = case.latents(0)
    with torch.no_grad(), toca.generation(num_steps=8, manual_steps=True) as generation:
        for t in timesteps(8, case.batch):
            x = x - 0.05 * case.call(model, x, t)[:, : x.shape[1]]
            generation.advance()
            states = generation.states.values()
            addresses.append({key: buffer.data_ptr() for state in states for key, buffer in state.tensors.items()})
    assert addresses[0] and all(a == addresses[0] for a in addresses)
    assert toca.regions[-1].runs["partial"] >= 4
