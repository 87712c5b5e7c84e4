import dataclasses
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from toca_fx.config import COMPILERS, PRESETS, SCORES, SITE_KINDS, ToCaConfig, linear_factor
from toca_fx.schedule import site_ratio

INT_MINIMUMS = {
    "interval": 1,
    "spatial_grid": 1,
    "leading_full_steps": 1,
    "attention_chunk": 1,
    "step_buckets": 0,
    "num_steps": 1,
}
NON_NEGATIVE = ("cache_weight", "spatial_weight") + tuple(f"{k}_weight" for k in SITE_KINDS)
CHOICES = {"score": SCORES, "compiler": COMPILERS}
BOOLS = ("cfg_shared", "count_down")
not_a_number = st.one_of(st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2))


def invalid_values():
    """(field, value, expected error) for every field."""
    cases = []
    for name, minimum in INT_MINIMUMS.items():
        cases.append(st.tuples(st.just(name), st.integers(max_value=minimum - 1), st.just(ValueError)))
        cases.append(st.tuples(st.just(name), st.booleans() | st.floats() | st.text(max_size=3), st.just(TypeError)))
    outside_unit = st.floats(max_value=-1e-9) | st.floats(min_value=1 + 1e-9) | st.just(math.nan)
    cases.append(st.tuples(st.just("fresh_ratio"), outside_unit, st.just(ValueError)))
    for name in NON_NEGATIVE:
        cases.append(st.tuples(st.just(name), st.floats(max_value=-1e-9) | st.just(math.inf), st.just(ValueError)))
    for name in ("step_weight", "layer_weight", "layer_center"):
        cases.append(st.tuples(st.just(name), st.sampled_from([math.nan, math.inf, -math.inf]), st.just(ValueError)))
    outside_open = st.floats(max_value=-1) | st.floats(min_value=1)
    cases.append(st.tuples(st.just("interval_step_weight"), outside_open, st.just(ValueError)))
    for name in ("fresh_ratio", "step_weight", "layer_weight", "layer_center", "interval_step_weight") + NON_NEGATIVE:
        cases.append(st.tuples(st.just(name), st.booleans() | not_a_number, st.just(TypeError)))
    for name, choices in CHOICES.items():
        unknown = st.text(max_size=12).filter(lambda s, c=choices: s not in c)
        cases.append(st.tuples(st.just(name), unknown, st.just(ValueError)))
        cases.append(st.tuples(st.just(name), st.integers() | st.none(), st.just(TypeError)))
    for name in BOOLS:
        cases.append(st.tuples(st.just(name), st.integers() | st.none() | st.text(max_size=3), st.just(TypeError)))
    cases.append(st.tuples(st.just("cache_dtype"), st.sampled_from([torch.int32, torch.bool]), st.just(ValueError)))
    # not strings: from_options reads a dtype's name ("bfloat16") as the dtype
    cases.append(st.tuples(st.just("cache_dtype"), st.sampled_from([16, 2.0, [torch.float16]]), st.just(TypeError)))
    return st.one_of(cases)


def test_defaults_are_valid_pixart_alpha():
    config = ToCaConfig()
    assert config == ToCaConfig.preset("pixart-alpha") == ToCaConfig.preset("toca")
    assert (config.interval, config.fresh_ratio, config.score) == (3, 0.30, "cross_entropy")
    assert (config.step_weight, config.layer_weight) == (0.9, 0.6)
    assert math.isclose(1 + config.step_weight, 1.9) and math.isclose(1 - config.step_weight, 0.1)
    assert math.isclose(1 + config.layer_weight, 1.6) and math.isclose(1 - config.layer_weight, 0.4)
    assert (config.cross_attention_weight, config.mlp_weight, config.self_attention_weight) == (0.6, 1.6, 0.0)
    assert (config.spatial_grid, config.spatial_weight, config.cache_weight) == (4, 0.4, 0.25)
    assert config.cfg_shared and config.leading_full_steps == 1 and config.interval_step_weight == 0.2
    assert not config.count_down and config.compiler == "inductor" and config.cache_dtype is None


def test_presets():
    assert set(PRESETS) == {"pixart-alpha", "toca", "dit", "fora", "random", "opensora", "flux"} | {
        "taylorseer",
        "toca-forecast",
    }
    dit = ToCaConfig.preset("dit")
    assert (dit.fresh_ratio, dit.interval, dit.score) == (0.07, 3, "attention")
    assert dit.count_down and not dit.cfg_shared
    assert (1 + dit.step_weight, 1 - dit.step_weight) == (-1.0, 3.0)
    assert math.isclose(1 + dit.layer_weight, 0.8) and math.isclose(1 - dit.layer_weight, 1.2)
    assert (dit.self_attention_weight, dit.cross_attention_weight, dit.mlp_weight) == (0.0, 0.0, 2.5)
    assert (dit.spatial_grid, dit.spatial_weight, dit.interval_step_weight) == (2, 0.6, 0.0)
    fora = ToCaConfig.preset("fora")
    assert (fora.interval, fora.fresh_ratio, fora.interval_step_weight, fora.score) == (3, 0.0, 0.0, "random")
    assert (fora.step_weight, fora.layer_weight, fora.spatial_weight, fora.cache_weight) == (0, 0, 0, 0)
    assert ToCaConfig.preset("random") == dataclasses.replace(ToCaConfig(), score="random")
    assert ToCaConfig.preset("taylorseer") == dataclasses.replace(fora, interval=4, forecast_order=2)
    assert ToCaConfig.preset("toca-forecast") == dataclasses.replace(ToCaConfig(), forecast_order=1)
    assert ToCaConfig().forecast_order == 0 and fora.forecast_order == 0  # ToCa's stale reuse


def test_opensora_and_flux_presets():
    opensora = ToCaConfig.preset("opensora")
    assert (opensora.fresh_ratio, opensora.mlp_weight, opensora.cross_attention_weight) == (0.1, 1.495, 0.0)
    assert opensora.leading_full_steps == 3 and opensora.self_attention_weight == 0.0
    flux = ToCaConfig.preset("flux")
    assert (flux.fresh_ratio, flux.interval, flux.leading_full_steps) == (0.1, 4, 3)
    assert (flux.mlp_weight, flux.mixed_weight) == (0.4, 1.6)
    for layer in range(57):  # FLUX.1: 19 double-stream + 38 single-stream blocks
        ratio = site_ratio(flux, 0.5, layer, 57, "mixed")
        assert math.isclose(ratio, min(max(0.1 * (1.5 - layer / 27) * 1.6, 0.0), 1.0), abs_tol=1e-12)


def test_layer_center_shifts_the_layer_factor():
    base, shifted = ToCaConfig(layer_weight=0.5), ToCaConfig(layer_weight=0.5, layer_center=0.75)
    for layer in range(4):
        difference = site_ratio(base, 0.3, layer, 4, "mlp") - site_ratio(shifted, 0.3, layer, 4, "mlp")
        assert math.isclose(difference, base.fresh_ratio * linear_factor(0.9, 0.3) * 0.25 * base.mlp_weight)


def test_preset_overrides_and_unknown_name():
    assert ToCaConfig.preset("dit", interval=5).interval == 5
    with pytest.raises(ValueError, match="pixart-alpha.*dit.*fora"):
        ToCaConfig.preset("nope")


def test_kind_weight():
    config = ToCaConfig()
    assert [config.kind_weight(k) for k in SITE_KINDS] == [0.0, 0.6, 1.6, 0.0, 1.6]
    with pytest.raises(ValueError, match="self_attention"):
        config.kind_weight("conv")


@given(invalid_values())
def test_invalid_values_are_rejected_naming_the_field(case):
    name, value, error = case
    with pytest.raises(error, match=rf"ToCaConfig\.{name} must be"):
        ToCaConfig(**{name: value})


def test_error_message_lists_allowed_values():
    with pytest.raises(ValueError) as info:
        ToCaConfig(score="foo")
    assert str(info.value) == "ToCaConfig.score must be one of 'attention', 'cross_entropy', 'random'; got 'foo'"


def test_valid_edge_values():
    ToCaConfig(fresh_ratio=0, interval=1, step_buckets=0, num_steps=1, interval_step_weight=-0.99)
    ToCaConfig(fresh_ratio=1.0, cache_dtype=torch.bfloat16, compiler="eager", step_weight=-5, layer_weight=3)


def test_frozen():
    config = ToCaConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.interval = 4


def test_from_options():
    assert ToCaConfig.from_options(None) == ToCaConfig.from_options({}) == ToCaConfig()
    config = ToCaConfig.from_options({"preset": "dit", "fresh_ratio": 0.1, "cache_dtype": "bfloat16"})
    assert config == ToCaConfig.preset("dit", fresh_ratio=0.1, cache_dtype=torch.bfloat16)
    assert ToCaConfig.from_options({"cache_dtype": "torch.float16"}).cache_dtype == torch.float16
    assert ToCaConfig.from_options({"cache_dtype": torch.float32}).cache_dtype == torch.float32
    assert ToCaConfig.from_options({"interval": 2}).interval == 2


def test_from_options_errors():
    with pytest.raises(ValueError, match="'intervl'.*interval"):
        ToCaConfig.from_options({"intervl": 2})
    with pytest.raises(ValueError, match="cache_dtype"):
        ToCaConfig.from_options({"cache_dtype": "int8"})
    with pytest.raises(ValueError, match="cache_dtype"):
        ToCaConfig.from_options({"cache_dtype": "Tensor"})
    with pytest.raises(ValueError, match="preset"):
        ToCaConfig.from_options({"preset": "sdxl"})
