"""Bad options through every entry point: ToCaConfig, from_options, ToCa(...), torch.compile's options.

Each must fail with ValueError/TypeError naming the field and what it accepts, before any compile.
"""

import dataclasses
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_config import invalid_values

import toca_fx
from toca_fx.config import COMPILERS, PRESETS, ToCaConfig

from harness import pixart_case

FIELDS = tuple(f.name for f in dataclasses.fields(ToCaConfig))
unknown_keys = st.text(min_size=1, max_size=12).filter(lambda key: key not in FIELDS + ("preset",))
entry_points = st.sampled_from(["from_options", "ToCa", "ToCa(preset)", "ToCa(config)"])


def build(entry: str, options: dict):
    if entry == "from_options":
        return ToCaConfig.from_options(options)
    if entry == "ToCa":
        return toca_fx.ToCa(**options)
    if entry == "ToCa(preset)":
        return toca_fx.ToCa("dit", **options)
    return toca_fx.ToCa(ToCaConfig(interval=2), **options)


@given(invalid_values(), entry_points, st.sampled_from([{}, {"interval": 4}, {"compiler": "eager"}]))
def test_an_invalid_value_fails_at_every_entry_point_naming_the_field(case, entry, valid):
    name, value, error = case
    with pytest.raises(error, match=rf"ToCaConfig\.{name} must be"):
        build(entry, {**valid, name: value})


@given(unknown_keys, entry_points)
def test_an_unknown_option_fails_listing_the_valid_ones(key, entry):
    with pytest.raises(ValueError) as info:
        build(entry, {key: 1})
    message = str(info.value)
    assert repr(key) in message and all(field in message for field in FIELDS)


@given(st.text(max_size=10).filter(lambda name: name not in PRESETS) | st.integers() | st.none())
def test_an_unknown_preset_fails_listing_the_presets(name):
    error = ValueError if isinstance(name, str) else TypeError
    pattern = r"ToCaConfig\.preset must be .*" + ".*".join(map(re.escape, map(repr, PRESETS)))
    builders = [ToCaConfig.preset, lambda n: ToCaConfig.from_options({"preset": n})]
    for build_preset in builders + [toca_fx.ToCa] * (isinstance(name, str) and name != "auto"):  # ToCa("auto") is valid
        with pytest.raises(error, match=pattern):
            build_preset(name)


def test_other_bad_arguments_are_clear():
    with pytest.raises(TypeError, match="options must be a dict"):
        ToCaConfig.from_options([("interval", 2)])
    with pytest.raises(TypeError, match="inner_compiler must be callable"):
        toca_fx.ToCa(inner_compiler="eager")
    with pytest.raises(ValueError, match=r"ToCaConfig\.num_steps must be >= 1"):
        toca_fx.ToCa().reset(num_steps=0)
    with pytest.raises(TypeError, match="ToCa config must be"):
        toca_fx.ToCa(3.0)


def test_torch_compile_reports_the_bad_option_and_the_allowed_values():
    case = pixart_case(layers=1, batch=1, grid=(2, 2))
    bad = [  # each costs a Dynamo trace: the sweep above covers the values, these the path
        ({"compiler": "tvm"}, "ToCaConfig.compiler must be one of " + ", ".join(map(repr, COMPILERS))),
        ({"fresh_ratios": 0.1}, r"unknown option 'fresh_ratios': not an Inductor config .*, nor a ToCa option"),
    ]
    for options, message in bad:
        torch._dynamo.reset()
        model = torch.compile(case.model, backend="toca", options=options, dynamic=False)
        with pytest.raises(Exception, match=message):
            case.call(model, case.latents(), torch.tensor([999]))
    torch._dynamo.reset()
    model = torch.compile(case.model, backend=toca_fx.ToCa(compiler="eager"), mode="max-autotune", dynamic=False)
    with pytest.raises(Exception, match="inner compiler 'eager' takes no Inductor options"):
        case.call(model, case.latents(), torch.tensor([999]))
