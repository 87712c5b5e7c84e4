"""The model zoo: every diffusers transformer class and the hand-written DiTs, each compiled three
times with the fast inner compiler (once per session; the tests of one model share the runs).

Every model: the sites found are the reviewed snapshot (``zoo/expected_sites.json``), and
``interval=1`` and recomputing every token are exact. Every model that converts (a cached site in
every block, partial steps running, a finite output close to uncached) does so; the few that do
not are listed in ``zoo.NOT_CONVERTING`` with the reason, and together they stay under 5% of the zoo.
"""

from functools import cache

import pytest
import torch

from zoo import NOT_CONVERTING, RUNNABLE, ZOO
from zoo.case import sample
from zoo.checks import STEPS, compile_toca, generate, max_abs_diff, relative_error, run_checks

EXACT = 1e-5
DEFAULT_PRESET_TOLERANCE = 0.4  # random weights, 6 steps: the observed worst is BriaFibo2's 0.35


@cache
def checks(name: str):
    return run_checks(ZOO[name].build(), compiler="eager", flops=False)


@pytest.mark.parametrize("name", RUNNABLE)
def test_conversion_finds_the_expected_sites(name):
    assert dict(checks(name).sites) == ZOO[name].expected


@pytest.mark.parametrize("name", RUNNABLE)
def test_interval_one_and_recomputing_every_token_are_exact(name):
    result = checks(name)
    assert result.interval_one_diff <= EXACT and result.recompute_all_diff <= EXACT
    cached = any(key.endswith(("/partial", "/reuse")) for key in result.sites)
    assert result.recompute_all_partial_steps > 0 or not cached


@pytest.mark.parametrize("name", RUNNABLE)
def test_the_model_converts(name):
    result = checks(name)
    converts = (
        result.cached_in_every_block
        and result.default_partial_steps > 0
        and result.default_finite
        and result.default_error <= DEFAULT_PRESET_TOLERANCE
        and not result.failures
    )
    assert converts is (name not in NOT_CONVERTING), (result.failures, result.reasons, dict(result.sites))


def test_at_least_95_percent_of_the_zoo_converts():
    assert len(NOT_CONVERTING) <= 0.05 * len(RUNNABLE)
    assert set(NOT_CONVERTING) <= set(RUNNABLE)


@pytest.mark.inductor
@pytest.mark.parametrize(("name", "same_as_eager"), [("SD3Transformer2DModel", False), ("OpenSoraSTDiT", True)])
def test_default_preset_under_inductor(name, same_as_eager):
    """Inductor lowers the same variants: same sites, finite and close to uncached. With a
    deterministic score (OpenSora's cross-attention entropy) it also selects the same tokens as the
    eager inner compiler, so the outputs agree; SD3's blocks fall back to random scores, whose
    random numbers differ between Inductor and eager."""
    case = ZOO[name].build()
    reference = sample(case, case.model, STEPS)
    runs = {}
    for compiler in ("eager", "inductor") if same_as_eager else ("inductor",):
        toca, model = compile_toca(case, compiler=compiler)
        runs[compiler] = generate(case, toca, model, STEPS)
        assert toca.stats["partial_steps"] > 0 and not toca.fallbacks
        assert not [region.failure for region in toca.regions if region.failure]
    assert all(bool(torch.isfinite(out).all()) for out in runs["inductor"])
    assert relative_error(runs["inductor"], reference) <= DEFAULT_PRESET_TOLERANCE
    if same_as_eager:
        assert max_abs_diff(runs["inductor"], runs["eager"]) <= 1e-4
