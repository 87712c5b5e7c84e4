import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toca_fx.config import SITE_KINDS, ToCaConfig
from toca_fx.cost import schedule_flops
from toca_fx.report import schedule_table
from toca_fx.schedule import SiteSpec, StepPlan, build_schedule, fresh_count, is_full_step, site_ratio

# A small PixArt-like model: self-attention, cross-attention and MLP in each of 4 blocks.
PIXART_SITES = tuple(
    SiteSpec(kind, layer, 256) for layer in range(4) for kind in ("self_attention", "cross_attention", "mlp")
)
DIT_SITES = tuple(SiteSpec(kind, layer, 256) for layer in range(4) for kind in ("self_attention", "mlp"))


def full_steps(plans):
    return [plan.index for plan in plans if plan.full]


def test_interval_one_is_always_full():
    plans = build_schedule(ToCaConfig(interval=1), 20, PIXART_SITES)
    assert all(plan.full for plan in plans)
    assert all(plan.fresh == (256,) * len(PIXART_SITES) for plan in plans)


def test_fora_reuses_everything_between_full_steps():
    plans = build_schedule(ToCaConfig.preset("fora"), 20, PIXART_SITES)
    assert full_steps(plans) == list(range(0, 20, 3))
    assert all(plan.fresh == (0,) * len(PIXART_SITES) for plan in plans if not plan.full)


def reference_pixart_full_steps(num_steps):
    """The rule written out independently: step 0, then step i is full when i is a multiple
    of round(3 / (0.8 + 0.4 * i / num_steps))."""
    result = []
    for i in range(num_steps):
        cycle = round(3 / (0.8 + 0.4 * i / num_steps))
        if i == 0 or i % cycle == 0:
            result.append(i)
    return result


def test_pixart_alpha_full_steps():
    config = ToCaConfig.preset("pixart-alpha")
    plans = build_schedule(config, 20, PIXART_SITES)
    assert full_steps(plans) == reference_pixart_full_steps(20)
    # By hand: steps 1 and 2 have cycle round(3/0.82) = round(3/0.84) = 4, from step 3 it is 3.
    assert [plan.full for plan in plans[:7]] == [True, False, False, True, False, False, True]
    assert full_steps(plans) == [0, 3, 6, 9, 12, 15, 18]
    # With 50 steps the time-varying cycle shows: cycle 4 up to step 7 (3/0.856 = 3.505), then 3.
    assert full_steps(build_schedule(config, 50, PIXART_SITES))[:4] == [0, 4, 9, 12]
    assert full_steps(build_schedule(config, 50, PIXART_SITES)) == reference_pixart_full_steps(50)


def test_pixart_alpha_ratios():
    config = ToCaConfig.preset("pixart-alpha")
    for progress in (0.1, 0.5, 0.9):
        for layer in range(4):
            kinds = ("mlp", "cross_attention", "self_attention")
            mlp, cross, self_attn = (site_ratio(config, progress, layer, 4, k) for k in kinds)
            assert mlp > cross > self_attn == 0
    assert site_ratio(config, 0.5, 0, 4, "mlp") > site_ratio(config, 0.5, 3, 4, "mlp")
    assert site_ratio(config, 0.1, 2, 4, "mlp") > site_ratio(config, 0.9, 2, 4, "mlp")
    # fresh_ratio * f_step * f_layer * f_module = 0.3 * 1.0 * 1.6 * 0.6 at progress 0.5, layer 0.
    assert math.isclose(site_ratio(config, 0.5, 0, 4, "cross_attention"), 0.3 * 1.6 * 0.6)
    assert site_ratio(config, 0.0, 0, 4, "mlp") == 1.0  # 0.3 * 1.9 * 1.6 * 1.6 clamps to 1


def test_pixart_alpha_fresh_counts_shrink_with_depth_and_time():
    plans = [plan for plan in build_schedule(ToCaConfig(), 20, PIXART_SITES) if not plan.full]
    mlp = [i for i, site in enumerate(PIXART_SITES) if site.kind == "mlp"]
    for plan in plans:
        ks = [plan.fresh[i] for i in mlp]
        assert ks == sorted(ks, reverse=True)
        assert all(plan.fresh[i] == 0 for i, s in enumerate(PIXART_SITES) if s.kind == "self_attention")
    assert plans[0].fresh[mlp[-1]] > plans[-1].fresh[mlp[-1]]


def test_dit_counts_down_and_starts_with_empty_partial_steps():
    config = ToCaConfig.preset("dit")
    plans = build_schedule(config, 50, DIT_SITES)
    assert full_steps(plans) == [0] + [i for i in range(50) if (49 - i) % 3 == 0]
    assert full_steps(plans)[:4] == [0, 1, 4, 7]
    # The step factor -1 + 4p is negative before p = 0.25, so nothing is refreshed there.
    early = [plan for plan in plans if not plan.full and plan.index < 12]
    assert early and all(plan.fresh == (0,) * len(DIT_SITES) for plan in early)
    late = [plan for plan in plans if not plan.full and plan.index > 40]
    assert all(k > 0 for plan in late for k, site in zip(plan.fresh, DIT_SITES) if site.kind == "mlp")
    assert all(k == 0 for plan in plans if not plan.full for k, s in zip(plan.fresh, DIT_SITES) if s.kind != "mlp")


sites_strategy = st.lists(
    st.builds(SiteSpec, st.sampled_from(SITE_KINDS), st.integers(0, 27), st.integers(1, 5000)), min_size=1, max_size=12
)


@given(
    st.sampled_from(["pixart-alpha", "dit", "random"]),
    st.integers(1, 100),
    st.integers(1, 8),
    st.integers(1, 6),
    sites_strategy,
)
def test_step_buckets_bound_distinct_partial_plans(preset, num_steps, buckets, interval, sites):
    config = ToCaConfig.preset(preset, step_buckets=buckets, interval=interval)
    plans = build_schedule(config, num_steps, sites)
    assert len({plan.fresh for plan in plans if not plan.full}) <= buckets
    assert build_schedule(config, num_steps, sites) == plans  # pure
    assert [plan.index for plan in plans] == list(range(num_steps))
    for plan in plans:
        assert plan.full == is_full_step(config, plan.index, num_steps)
        assert all(0 <= k <= site.num_tokens for k, site in zip(plan.fresh, sites))


def test_zero_buckets_use_exact_progress():
    plans = build_schedule(ToCaConfig(step_buckets=0), 8, PIXART_SITES)
    assert [plan.progress for plan in plans] == [i / 8 for i in range(8)]
    plans = build_schedule(ToCaConfig(step_buckets=4), 8, PIXART_SITES)
    assert [plan.progress for plan in plans] == [0.125, 0.125, 0.375, 0.375, 0.625, 0.625, 0.875, 0.875]


@given(st.integers(1, 100_000), st.data())
def test_fresh_count(num_tokens, data):
    assert fresh_count(1.0, num_tokens) == num_tokens
    assert fresh_count(0.0, num_tokens) == 0
    k = data.draw(st.integers(0, num_tokens))
    assert fresh_count(k / num_tokens, num_tokens) == k
    dyadic = data.draw(st.integers(0, 1024)) / 1024  # ratio * num_tokens is exact in floating point
    assert fresh_count(dyadic, num_tokens) == math.floor(dyadic * num_tokens)


def test_fresh_count_rejects_ratios_outside_unit_interval():
    with pytest.raises(ValueError):
        fresh_count(1.5, 10)


def test_schedule_flops_by_hand():
    sites = (SiteSpec("mlp", 0, 10), SiteSpec("cross_attention", 1, 10))
    plans = (StepPlan(0, True, 0.0, (10, 10)), StepPlan(1, False, 0.5, (5, 0)), StepPlan(2, False, 0.5, (10, 2)))
    # Full: 110 (with scores). Partial 1: 100 - 20 * 0.5 - (30 * 1 + 4) = 56. Partial 2: 100 - 0 - 30 * 0.8 = 76.
    assert schedule_flops(plans, 110.0, 100.0, (20.0, 30.0), (1.0, 4.0), sites) == pytest.approx(242.0)


def test_schedule_table_summarises_kinds():
    plans = build_schedule(ToCaConfig(), 6, PIXART_SITES)
    table = schedule_table(plans, PIXART_SITES)
    lines = table.splitlines()
    assert "k self_attention" in lines[0] and "k mlp" in lines[0] and "k mixed" not in lines[0]
    assert len(lines) == 2 + 6
    assert "full" in lines[2] and "partial" in lines[3]
