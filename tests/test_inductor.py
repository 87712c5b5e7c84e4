"""End to end through Inductor: the compiled variants agree with eager execution of the same graphs."""

import pytest
import torch

from harness import compile_toca, pixart_case, sample

pytestmark = pytest.mark.inductor


@pytest.mark.parametrize("score", ["cross_entropy", "attention"])
def test_inductor_matches_eager_and_uncached(score):
    case = pixart_case(layers=2, grid=(4, 6))
    steps = 6
    reference = sample(case, case.model, steps)
    config = dict(num_steps=steps, step_buckets=1, score=score, attention_chunk=7)
    toca, model = compile_toca(case, "pixart-alpha", **config)
    compiled = sample(case, model, steps)
    assert toca.stats == {**toca.stats, "full_steps": 2, "partial_steps": 4}
    assert len(toca.regions[0].variants) == 2  # FULL and one PARTIAL (one step bucket)
    assert torch.allclose(compiled[0], reference[0], atol=1e-5)  # a full step is exact

    _, model_eager = compile_toca(case, "pixart-alpha", compiler="eager", **config)
    eager = sample(case, model_eager, steps)
    for ours, theirs in zip(compiled, eager):
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (ours - theirs).abs().max()
