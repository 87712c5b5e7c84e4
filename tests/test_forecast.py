"""Forecasting (``forecast_order``): cached values extrapolated by their Taylor series in step units.

Exact wherever everything is recomputed; the forecasts equal a Taylor series computed eagerly here
from the branch outputs of the full steps; order 0 adds nothing to the graphs."""

from __future__ import annotations

import torch
import torch.fx as fx
from hypothesis import given, settings
from hypothesis import strategies as st
from test_exactness import assert_same

from toca_fx.contract import StateKind
from toca_fx.passes.rewrite import build_full, build_partial, step_modes

from harness import RECOMPUTE_ALL, compile_toca, held_bytes, pixart_case, sample
from strategies import cases

ORDERS = st.sampled_from([1, 2])


@given(case=cases(), steps=st.integers(2, 5), order=ORDERS)
def test_interval_one_with_forecasting_equals_uncached(case, steps, order):
    reference = sample(case, case.model, steps)
    toca, model = compile_toca(case, "taylorseer", compiler="eager", interval=1, num_steps=steps, forecast_order=order)
    assert_same(sample(case, model, steps), reference)


@given(case=cases(), steps=st.integers(3, 6), order=ORDERS)
def test_recomputing_every_token_with_forecasting_equals_uncached(case, steps, order):
    """Every row is fresh at every partial step (age 0): its forecast is the computed value itself."""
    reference = sample(case, case.model, steps)
    config = dict(interval=3, num_steps=steps, forecast_order=order, **RECOMPUTE_ALL)
    toca, model = compile_toca(case, "toca-forecast", compiler="eager", **config)
    assert_same(sample(case, model, steps), reference)
    assert toca.stats["partial_steps"] > 0


class CallRecorder:
    """Inner compiler that runs each variant eagerly and keeps, for every call, the graph and a copy
    of every node's value at the point it was computed (later in-place writes do not reach it)."""

    def __init__(self):
        self.calls: list[tuple[fx.GraphModule, dict]] = []

    def __call__(self, gm: fx.GraphModule, example_inputs):
        def run(*args):
            values = {}

            class Copying(fx.Interpreter):
                def run_node(self, node):
                    value = super().run_node(node)
                    values[node.name] = value.clone() if isinstance(value, torch.Tensor) else value
                    return value

            out = Copying(gm).run(*args)
            self.calls.append((gm, values))
            return out

        return run


def nodes_with_role(gm: fx.GraphModule, role: str) -> dict[int, fx.Node]:
    return {n.meta["toca"]["site"]: n for n in gm.graph.nodes if n.meta.get("toca", {}).get("role") == role}


@settings(max_examples=15)
@given(case=cases(families=("pixart", "dit", "parallel")), order=ORDERS, interval=st.integers(2, 4))
def test_forecasts_equal_an_eager_taylor_series_of_the_full_steps(case, order, interval):
    """Every site reused between full steps (TaylorSeer): at step s, j steps after the full step s_k,
    a site stands in with y_k + d1 j + d2 j^2 / 2, where d1 and d2 are the finite differences of its
    outputs y at the full steps over the steps between them (0 until there are enough)."""
    steps = 3 * interval + 2
    recorder = CallRecorder()
    config = dict(interval=interval, num_steps=steps, forecast_order=order, self_check=False)
    toca, model = compile_toca(case, "taylorseer", inner_compiler=recorder, **config)
    sample(case, model, steps)
    assert len(recorder.calls) == steps and len(toca.regions) == 1
    history: dict[int, list[tuple[int, torch.Tensor]]] = {}  # site -> (step, output) at full steps
    checked = 0
    for step, (gm, values) in enumerate(recorder.calls):
        caches = nodes_with_role(gm, "cache")
        if caches:  # a full step: the output each site caches
            for site, write in caches.items():
                history.setdefault(site, []).append((step, values[write.args[1].name]))
            continue
        for site, node in nodes_with_role(gm, "forecast").items():
            assert torch.allclose(values[node.name], taylor(history[site], step, order), atol=1e-5, rtol=1e-4)
            checked += 1
    assert checked > 0


def taylor(full_steps: list[tuple[int, torch.Tensor]], step: int, order: int) -> torch.Tensor:
    """The Taylor forecast at ``step`` from the outputs at the full steps before it."""
    derivatives = [[] for _ in range(order + 1)]  # derivatives[n]: the n-th derivative at each full step
    for k, (s, y) in enumerate(full_steps):
        derivatives[0].append(y)
        for n in range(1, order + 1):
            gap = s - full_steps[k - 1][0] if k else 1
            enough = k >= n
            derivatives[n].append((derivatives[n - 1][k] - derivatives[n - 1][k - 1]) / gap if enough else 0 * y)
    s, _ = full_steps[-1]
    j = step - s
    return sum(derivatives[n][-1] * j**n / [1, 1, 2][n] for n in range(order + 1))


def test_order_zero_adds_nothing_and_derivatives_count_as_cache_memory():
    """Order 0 builds today's graphs (no forecast node, no extra state); each order adds one
    derivative buffer per cached output, counted in the cache bytes, in the cache dtype."""
    case = pixart_case()
    held = {}
    for order, cache_dtype in [(0, None), (1, None), (2, None), (2, torch.bfloat16)]:
        toca, model = compile_toca(
            case, "pixart-alpha", compiler="eager", num_steps=6, forecast_order=order, cache_dtype=cache_dtype
        )
        sample(case, model, 6)
        region = toca.regions[0]
        held[order, cache_dtype] = held_bytes(toca)
        derivatives = [key for key in region.layout if key.kind is StateKind.DERIVATIVE]
        assert len(derivatives) == order * sum(site.policy != "full" for site in region.analysis.sites)
        assert all(region.layout[key].dtype == (cache_dtype or torch.float32) for key in derivatives)
        if order == 0:
            assert not any(key.kind is StateKind.CLOCK for key in region.layout)
            modes = step_modes(region.analysis.sites, region.config, region.plan(1, 6).fresh)
            for variant in (
                build_full(region.gm, region.analysis, region.choices),
                build_partial(region.gm, region.analysis, region.choices, modes),
            ):
                roles = {n.meta.get("toca", {}).get("role") for n in variant.module.graph.nodes}
                assert not roles & {"forecast", "derivatives", "age", "clock"}
    assert held[1, None] == 2 * held[0, None] and held[2, None] == 3 * held[0, None]
    assert held[2, torch.bfloat16] == held[2, None] // 2


def test_forecasting_a_site_reused_for_want_of_a_token_flow():
    """StableAudio's sites are reused whole because no token flow is proven for them: their forecast
    ages by the clock alone (found by running every zoo model with forecasting; 8 of 83 failed before)."""
    from zoo import ZOO
    from zoo.checks import generate

    case = ZOO["StableAudioDiTModel"].build()
    reference = sample(case, case.model, 6)
    toca, model = compile_toca(case, "taylorseer", compiler="eager", num_steps=6, interval=3, **RECOMPUTE_ALL)
    assert_same(generate(case, toca, model, 6), reference)
    assert not [region.failure for region in toca.regions if region.failure]
    toca, model = compile_toca(case, "taylorseer", compiler="eager", num_steps=6)
    assert all(torch.isfinite(out).all() for out in generate(case, toca, model, 6))
    assert toca.stats["partial_steps"] > 0 and not [region.failure for region in toca.regions if region.failure]
