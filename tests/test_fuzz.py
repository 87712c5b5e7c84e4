"""Fuzzing: random valid configs x random tiny models x step counts.

Every run must finish (a valid config never raises), every output must be finite, and a config
that recomputes every token must equal the uncached model.
``pytest tests/test_fuzz.py --hypothesis-show-statistics`` shows what the cases covered (models,
forced recompute, partial steps); ``TOCA_FUZZ_EXAMPLES=200`` runs more of them.
"""

import os

import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from toca_fx.config import SCORES, SITE_KINDS, ToCaConfig

from harness import RECOMPUTE_ALL, compile_toca, sample
from strategies import cases

EXAMPLES = int(os.environ.get("TOCA_FUZZ_EXAMPLES", settings.default.max_examples))


@st.composite
def configs(draw) -> ToCaConfig:
    """Any valid config: every field drawn from its whole valid range (weights up to 3)."""
    weight = st.floats(0, 3)
    return ToCaConfig(
        interval=draw(st.integers(1, 5)),
        fresh_ratio=draw(st.floats(0, 1)),
        score=draw(st.sampled_from(SCORES)),
        cache_weight=draw(weight),
        spatial_grid=draw(st.integers(1, 4)),
        spatial_weight=draw(weight),
        step_weight=draw(st.floats(-3, 3)),
        layer_weight=draw(st.floats(-3, 3)),
        **{f"{kind}_weight": draw(weight) for kind in SITE_KINDS},
        cfg_shared=draw(st.booleans()),
        leading_full_steps=draw(st.integers(1, 3)),
        interval_step_weight=draw(st.floats(-0.95, 0.95)),
        count_down=draw(st.booleans()),
        num_steps=draw(st.none() | st.integers(1, 8)),
        step_buckets=draw(st.integers(0, 3)),
        attention_chunk=draw(st.integers(1, 64)),
        cache_dtype=draw(st.sampled_from([None, torch.bfloat16, torch.float16])),
        compiler=draw(st.sampled_from(["eager", "eager", "aot_eager"])),
    )


@settings(max_examples=EXAMPLES)
@given(cases(), configs(), st.integers(1, 6), st.booleans())
def test_random_configs_on_random_models_finish_with_finite_outputs(case, config, steps, recompute_all):
    """Two generations of ``steps`` steps (the second uses what the first taught, when num_steps
    is unset). With ``recompute_all`` every site recomputes every token: output equals eager."""
    if recompute_all:
        config = ToCaConfig.from_options({**config.__dict__, **RECOMPUTE_ALL})
    toca, model = compile_toca(case, config)
    generations = [sample(case, model, steps, seed=seed) for seed in (0, 1)]
    assert all(torch.isfinite(out).all() for outputs in generations for out in outputs)
    assert toca.stats["generations"] == (steps > 1)  # one-step generations look like two calls per step
    if recompute_all:
        reference = sample(case, case.model, steps, seed=1)
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(generations[1], reference))
    event("model", case.name)
    event("recompute every token", str(recompute_all))
    event("ran partial steps", str(toca.stats["partial_steps"] > 0))
