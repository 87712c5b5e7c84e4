"""End to end through Inductor: the compiled variants agree with eager execution of the same graphs."""

import pytest
import torch

from toca_fx.passes.rewrite import step_modes

from harness import compile_toca, pixart_case, sample

pytestmark = pytest.mark.inductor


def run_graph(gm, example_inputs):
    """An inner compiler that runs each variant's graph as it is."""
    return gm.forward


@pytest.mark.parametrize("score", ["cross_entropy", "attention"])
def test_inductor_matches_eager_and_uncached(score):
    case = pixart_case(layers=2, grid=(4, 6))
    steps = 8
    reference = sample(case, case.model, steps)
    config = dict(num_steps=steps, step_buckets=0, score=score, attention_chunk=7)
    toca, model = compile_toca(case, "pixart-alpha", **config)
    compiled = sample(case, model, steps)
    assert toca.stats == {**toca.stats, "full_steps": 3, "partial_steps": 5}
    assert torch.allclose(compiled[0], reference[0], atol=1e-5)  # a full step is exact

    # k is a symbolic int: PARTIAL variants are compiled per shape of the step (one general for k >= 2, one more
    # where a site's k is 1, a size Inductor specialises), not per k tuple
    region = toca.regions[0]
    plans = [plan for plan in region.schedule(steps) if not plan.full]
    tuples = {plan.fresh for plan in plans}
    shapes = {step_modes(region.analysis.sites, region.config, plan.fresh) for plan in plans}
    with_ones = {(step_modes(region.analysis.sites, region.config, k), tuple(n == 1 for n in k)) for k in tuples}
    assert len(tuples) > len(shapes)
    assert len(region.variants) == 1 + len(with_ones) < 1 + len(tuples)

    _, model_eager = compile_toca(case, "pixart-alpha", inner_compiler=run_graph, **config)
    eager = sample(case, model_eager, steps)
    for ours, theirs in zip(compiled, eager):
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (ours - theirs).abs().max()
