"""No stale cache, ever: mid-generation changes of the input signature, interrupted generations,
and several compiled models must each give exactly what a fresh toca_fx model gives.

The config makes every step after the first (full) one run the same PARTIAL plan, so a state
that starts fresh at step s must match, bit for bit, a fresh model whose first step is s. Reading
a cache from before the change (or from another model) would make the outputs differ.
"""

import pytest
import torch

import toca_fx

from harness import pixart_case

STEPS = 9
STEADY = dict(num_steps=STEPS, interval=STEPS, interval_step_weight=0.0, step_weight=0.0, compiler="eager")
TIMESTEPS = [round(999 * (1 - i / (STEPS - 1))) for i in range(STEPS)]


def call_of(case, x):
    """One model call on latents ``x`` at an int timestep."""
    return lambda model, t: case.call(model, x, torch.full((x.shape[0],), t))


@torch.no_grad()
def run(model, timesteps, calls) -> list[torch.Tensor]:
    return [call(model, t) for t in timesteps for call in calls]


def fresh_toca(model, **overrides):
    torch._dynamo.reset()
    toca = toca_fx.ToCa("pixart-alpha", **{**STEADY, **overrides})
    return toca, torch.compile(model, backend=toca, dynamic=False)


def resolution():
    a, b = pixart_case(layers=1, grid=(4, 4)), pixart_case(layers=1, grid=(4, 6))
    return a.model, [call_of(a, a.latents(0))], [call_of(b, b.latents(1))], None


def batch_size():
    a, b = pixart_case(layers=1, batch=2), pixart_case(layers=1, batch=1)
    return a.model, [call_of(a, a.latents(0))], [call_of(b, b.latents(1))], None


def cfg_batching():
    """One call on the stacked cond/uncond batch, then one call per half (same latents)."""
    both, half = pixart_case(layers=1, batch=2), pixart_case(layers=1, batch=1)
    x = both.latents(0)
    return both.model, [call_of(both, x)], [call_of(half, x[:1]), call_of(half, x[1:])], None


def dtype():
    """The model and its inputs switch to bfloat16 and back (the context follows the latents)."""
    case = pixart_case(layers=1)
    context = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(1))

    def call(x):
        return lambda m, t: m(x, encoder_hidden_states=context.to(x.dtype), timestep=torch.full((2,), t)).sample

    x = case.latents(0)
    return case.model, [call(x)], [call(x.bfloat16())], case.model.to


@pytest.mark.parametrize("change", [resolution, batch_size, cfg_batching, dtype], ids=lambda f: f.__name__)
def test_a_mid_generation_change_and_back_matches_a_fresh_model(change, caplog):
    model, before, after, convert = change()
    toca, compiled = fresh_toca(model)
    with caplog.at_level("INFO", logger="toca_fx"):
        run(compiled, TIMESTEPS[:3], before)
        convert and convert(torch.bfloat16)
        changed = run(compiled, TIMESTEPS[3:6], after)
        convert and convert(torch.float32)
        back = run(compiled, TIMESTEPS[6:], before)
    assert sum("fresh state" in r.getMessage() for r in caplog.records) == len(after) + len(before)
    assert sum(r.runs["partial"] for r in toca.regions) == 6 and toca.stats["generations"] == 0

    convert and convert(torch.bfloat16)
    _, reference = fresh_toca(model)
    assert all(torch.equal(a, b) for a, b in zip(changed, run(reference, TIMESTEPS[3:6], after), strict=True))
    convert and convert(torch.float32)
    _, reference = fresh_toca(model)
    assert all(torch.equal(a, b) for a, b in zip(back, run(reference, TIMESTEPS[6:], before), strict=True))


def interrupting(flag: dict):
    """An inner compiler whose variants raise KeyboardInterrupt while ``flag["raise"]`` is set."""

    def compiler(gm, example_inputs):
        def run_variant(*args):
            if flag["raise"]:
                raise KeyboardInterrupt
            return gm.forward(*args)

        return run_variant

    return compiler


def test_an_interrupted_generation_leaves_the_next_one_clean(caplog):
    """Ctrl-C inside the model at step 4, then an image-to-image run that starts lower (step 5):
    without the interruption it would look like the same generation going on."""
    case = pixart_case(layers=1)
    x, other = call_of(case, case.latents(0)), call_of(case, case.latents(1))
    flag = {"raise": False}
    toca, compiled = fresh_toca(case.model, inner_compiler=interrupting(flag))
    run(compiled, TIMESTEPS[:4], [x])
    flag["raise"] = True
    with pytest.raises(KeyboardInterrupt):
        run(compiled, TIMESTEPS[4:5], [x])
    flag["raise"] = False
    with caplog.at_level("INFO", logger="toca_fx"):
        img2img = run(compiled, TIMESTEPS[5:], [other])
    assert any("interrupted by an exception" in r.getMessage() for r in caplog.records)
    assert toca.num_steps == STEPS  # the interrupted run did not teach a step count

    _, reference = fresh_toca(case.model)
    assert all(torch.equal(a, b) for a, b in zip(img2img, run(reference, TIMESTEPS[5:], [other]), strict=True))


@pytest.mark.parametrize("same_model", [True, False], ids=["same model twice", "two models"])
def test_compiled_models_never_share_state(same_model):
    """Interleaved generations on two compiled models equal each model's generation run alone.

    Dynamo reuses compiled code across torch.compile calls whose backends compare equal, and two
    instances of one class hit the same code: this is where state would leak."""
    first = pixart_case(layers=1, seed=0)
    second = first if same_model else pixart_case(layers=1, seed=1)
    jobs = [(first, call_of(first, first.latents(0))), (second, call_of(second, second.latents(1)))]
    torch._dynamo.reset()
    options = {**STEADY, "preset": "pixart-alpha"}
    compiled = [
        torch.compile(case.model, backend=backend, options=options, dynamic=False)
        for case, backend in zip((first, second), (toca_fx.toca_backend, "toca"))
    ]
    interleaved = [[], []]
    for start in range(0, STEPS, 3):
        for i, (_, call) in enumerate(jobs):
            interleaved[i] += run(compiled[i], TIMESTEPS[start : start + 3], [call])
    for (case, call), outputs in zip(jobs, interleaved):
        _, alone = fresh_toca(case.model)
        assert all(torch.equal(a, b) for a, b in zip(outputs, run(alone, TIMESTEPS, [call]), strict=True))
