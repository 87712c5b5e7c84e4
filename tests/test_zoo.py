"""The model zoo: every model converts to the expected sites and stays exact or close to uncached.

Each model is compiled three times (fast inner compiler) once per session; the tests of one model
share those runs. Tolerances: exact runs within 1e-5 absolute; the default preset's 6-step run within
DEFAULT_PRESET_TOLERANCE relative error (worst step) of uncached.
"""

from functools import cache

import pytest

from toca_fx.zoo import ZOO
from toca_fx.zoo.checks import run_checks

EXACT = 1e-5
DEFAULT_PRESET_TOLERANCE = 0.25  # random weights: the observed worst is Mochi's 0.20


@cache
def checks(name: str, compiler: str = "eager"):
    return run_checks(ZOO[name].build(), compiler=compiler, flops=False)


@pytest.mark.parametrize("name", list(ZOO))
def test_conversion_finds_the_expected_sites(name):
    assert dict(checks(name).sites) == ZOO[name].expected


@pytest.mark.parametrize("name", list(ZOO))
def test_interval_one_is_exact(name):
    assert checks(name).interval_one_diff <= EXACT


@pytest.mark.parametrize("name", list(ZOO))
def test_recomputing_every_token_is_exact(name):
    result = checks(name)
    assert result.recompute_all_diff <= EXACT
    assert result.recompute_all_partial_steps > 0 or not any(k.endswith(("/partial", "/reuse")) for k in result.sites)


@pytest.mark.parametrize("name", list(ZOO))
def test_default_preset_is_finite_and_close(name):
    result = checks(name)
    assert result.default_finite
    assert result.default_error <= DEFAULT_PRESET_TOLERANCE
    cacheable = any(k.endswith(("/partial", "/reuse")) for k in result.sites)
    assert result.default_partial_steps > 0 or not cacheable


@pytest.mark.inductor
@pytest.mark.parametrize("name", ["SD3", "OpenSoraSTDiT"])
def test_under_inductor(name):
    result = checks(name, "inductor")
    assert dict(result.sites) == ZOO[name].expected
    assert result.interval_one_diff <= EXACT and result.recompute_all_diff <= EXACT
    assert result.default_finite and result.default_error <= DEFAULT_PRESET_TOLERANCE
