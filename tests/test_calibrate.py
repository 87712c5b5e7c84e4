"""Calibrated schedules: the full steps chosen from one uncached generation's step-to-step changes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tiny_pipelines import prompt_inputs, run, tiny_pixart_pipeline

import toca_fx
from toca_fx import Calibration, ToCaConfig

from harness import compile_toca, pixart_case, sample

changes = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30).map(lambda c: Calibration(len(c) + 1, (0.0, *c)))


def accumulated(calibration: Calibration, full: tuple[int, ...]) -> list[tuple[int, float]]:
    """For every step after 0: the change accumulated since the last full step before it, with it."""
    out, total = [], 0.0
    for step in range(1, calibration.num_steps):
        total += calibration.changes[step]
        out.append((step, total))
        if step in full:
            total = 0.0
    return out


@given(calibration=changes, threshold=st.floats(0.0, 2.0))
def test_a_step_is_full_exactly_when_the_accumulated_change_passes_the_threshold(calibration, threshold):
    full = calibration.full_steps(threshold=threshold)
    assert full[0] == 0 and list(full) == sorted(set(full))
    for step, total in accumulated(calibration, full):
        assert (step in full) == (total > threshold)


@given(calibration=changes, data=st.data())
def test_a_budget_gets_the_least_accumulated_change_any_threshold_fitting_it_gets(calibration, data):
    budget = data.draw(st.integers(1, calibration.num_steps))
    full = calibration.full_steps(budget=budget)
    assert len(full) <= budget
    other = calibration.full_steps(threshold=data.draw(st.floats(0.0, 30.0)))
    if len(other) <= budget:
        assert worst_reuse(calibration, full) <= worst_reuse(calibration, other)


def worst_reuse(calibration: Calibration, full: tuple[int, ...]) -> float:
    """The largest change accumulated at a step that reuses the caches."""
    return max([total for step, total in accumulated(calibration, full) if step not in full], default=0.0)


def test_round_trips_through_json(tmp_path):
    calibration = Calibration.from_outputs([torch.full((2, 3), float(v)) for v in (1, 2, 2.5, 2.6)])
    assert calibration.changes == pytest.approx((0.0, 1.0, 0.25, 0.04), rel=1e-5)
    calibration.save(tmp_path / "calibration.json")
    assert Calibration.load(tmp_path / "calibration.json") == calibration
    assert calibration.config(threshold=0.2) == {"full_steps": (0, 1, 2), "num_steps": 4}


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(full_steps=(0, 3)), "steps below num_steps"),
        (dict(full_steps=(1, 3), num_steps=6), "increasing steps starting at 0"),
        (dict(full_steps=(0, 3, 3), num_steps=6), "increasing steps starting at 0"),
        (dict(full_steps=(0, 6), num_steps=6), "steps below num_steps"),
        (dict(full_steps=(0, 2.0), num_steps=6), "a sequence of ints"),
    ],
)
def test_bad_full_steps_are_clear_errors(fields, message):
    with pytest.raises((TypeError, ValueError), match=message):
        ToCaConfig(**fields)


def test_a_generation_of_another_length_is_a_clear_error():
    case = pixart_case(layers=1)
    toca, model = compile_toca(case, "taylorseer", compiler="eager", full_steps=[0, 3], num_steps=6)
    sample(case, model, 6)
    assert toca.stats["full_steps"] == 2
    with pytest.raises(ValueError, match="calibrated schedule .* is for 6 steps; this generation has 8"):
        with toca.generation(num_steps=8):
            sample(case, model, 8)


def test_calibrate_a_pipeline_and_run_its_schedule():
    torch._dynamo.reset()
    pipe = tiny_pixart_pipeline()
    pipe.set_progress_bar_config(disable=True)
    steps = 8
    calibration = toca_fx.calibrate(pipe, **prompt_inputs(pipe), num_inference_steps=steps, output_type="latent")
    assert calibration.num_steps == steps and all(c > 0 for c in calibration.changes[1:])
    uncached = run(pipe, steps)

    schedule = calibration.config(budget=3)
    toca = toca_fx.enable(pipe, "taylorseer", compiler="eager", **schedule)
    cached = run(pipe, steps)
    assert toca.stats["full_steps"] == len(schedule["full_steps"]) <= 3
    assert toca.stats["partial_steps"] == steps - toca.stats["full_steps"]
    assert toca.stats["compiled_variants"] == 2  # one FULL, one PARTIAL: the schedule is static
    assert torch.isfinite(cached).all() and not torch.equal(cached, uncached)
    with pytest.raises(RuntimeError, match="disable"):
        toca_fx.calibrate(pipe, **prompt_inputs(pipe), num_inference_steps=steps)

    toca_fx.disable(pipe)  # every step full: the uncached result
    toca_fx.enable(pipe, "taylorseer", compiler="eager", **calibration.config(budget=steps))
    assert torch.equal(run(pipe, steps), uncached)
