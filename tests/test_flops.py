"""FLOPs: a 20-step run saves what the schedule table predicts."""

import pytest
import torch

from toca_fx.passes.flops import flop_counter

from harness import FlopCounting, compile_toca, pixart_case, sample


@pytest.mark.parametrize("preset", ["pixart-alpha", "fora"])
def test_flops_fall_by_the_predicted_factor(preset):
    case = pixart_case(layers=4, heads=2, head_dim=8, grid=(8, 8))
    steps = 20
    with flop_counter() as uncached:
        sample(case, case.model, steps)
    counting = FlopCounting()
    toca, model = compile_toca(case, preset, inner_compiler=counting, num_steps=steps, self_check=False)
    sample(case, model, steps)
    measured = uncached.get_total_flops() / counting.total
    predicted_uncached, predicted_toca = toca.predicted_flops(steps)
    assert predicted_uncached == pytest.approx(uncached.get_total_flops(), rel=1e-6)
    assert toca.stats == {**toca.stats, "full_steps": 7, "partial_steps": 13}
    assert measured == pytest.approx(predicted_uncached / predicted_toca, rel=0.05)
    assert measured > 1.3


def test_attention_on_cpu_is_counted():
    """torch 2.13 counts CPU scaled_dot_product_attention as 0 FLOPs; ours counts QKᵀ and AV."""
    b, h, sq, sk, d = 2, 3, 5, 7, 4
    q, k, v = torch.randn(b, h, sq, d), torch.randn(b, h, sk, d), torch.randn(b, h, sk, d)
    with flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert counter.get_total_flops() == 2 * (2 * b * h * sq * sk * d)
