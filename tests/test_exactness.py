"""Exactness: whenever ToCa recomputes everything, its output equals the uncached model's."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from harness import RECOMPUTE_ALL, compile_toca, sample
from strategies import cases

TOL = dict(atol=1e-5, rtol=1e-5)


def assert_same(outputs, reference):
    assert len(outputs) == len(reference)
    for step, (out, ref) in enumerate(zip(outputs, reference)):
        assert torch.allclose(out, ref, **TOL), f"step {step}: max diff {(out - ref).abs().max():.3g}"


@given(case=cases(), steps=st.integers(2, 5), cfg=st.booleans())
def test_interval_one_equals_uncached(case, steps, cfg):
    reference = sample(case, case.model, steps)
    toca, model = compile_toca(case, compiler="eager", interval=1, num_steps=steps, cfg_shared=cfg)
    assert_same(sample(case, model, steps), reference)
    assert toca.stats["partial_steps"] == 0


@given(case=cases(), steps=st.integers(3, 6), cfg=st.booleans())
def test_recomputing_every_token_equals_uncached(case, steps, cfg):
    reference = sample(case, case.model, steps)
    toca, model = compile_toca(case, compiler="eager", interval=3, num_steps=steps, cfg_shared=cfg, **RECOMPUTE_ALL)
    assert_same(sample(case, model, steps), reference)
    assert toca.stats["partial_steps"] > 0
