"""Step-invariant context work (passes/context.py): partial steps take the text keys and values from
the last full step, exactly, and only while the text is the same tensor, unmodified."""

import torch

from harness import compile_toca, pixart_case
from zoo.case import timesteps
from zoo.diffusers_models import CAPTION_CHANNELS, TEXT_TOKENS

STEPS = 8
CHANGED_AT = 4  # a partial step of pixart-alpha over 8 steps


@torch.no_grad()
def generate(model, texts) -> list[torch.Tensor]:
    """Steps of a small sampler, passing ``texts[i]`` as the text at step i."""
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, TEXT_TOKENS)
    outputs = []
    for text, t in zip(texts, timesteps(STEPS, 2)):
        outputs.append(model(x, encoder_hidden_states=text(), timestep=t, encoder_attention_mask=mask).sample)
        x = x - 0.05 * outputs[-1][:, :4]
    return outputs


def run(texts):
    toca, model = compile_toca(pixart_case(), "pixart-alpha", compiler="eager", num_steps=STEPS)
    outputs = generate(model, texts)
    (region,) = toca.regions
    reused = {key.reused_context for key in region.variants.compiled if key.modes is not None}
    return outputs, region.analysis.context, reused, toca.stats


def assert_same(outputs, reference):
    for out, ref in zip(outputs, reference, strict=True):
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_partial_steps_reuse_the_text_keys_and_values_exactly():
    text = torch.randn(2, TEXT_TOKENS, CAPTION_CHANNELS, generator=torch.Generator().manual_seed(1))
    same, context, reused, stats = run([lambda: text] * STEPS)
    assert stats["partial_steps"] >= 4
    assert [n.name for n in context.values] == ["key_3", "value_3", "key_7", "value_7"]  # to_k, to_v per block
    assert context.dropped_flops > 0  # the caption projection and the key/value projections
    assert reused == {tuple(range(len(context.values)))}
    copies, _, reused, _ = run([text.clone] * STEPS)  # equal values, new tensors: nothing reused
    assert reused == {()}
    assert_same(same, copies)


def test_a_text_changed_in_place_is_recomputed_not_reused():
    original = torch.randn(2, TEXT_TOKENS, CAPTION_CHANNELS, generator=torch.Generator().manual_seed(1))
    text = original.clone()

    def changed_at(step):
        def current():
            if step == CHANGED_AT:
                text.mul_(0.5)
            return text

        return current

    changed, context, reused, _ = run([changed_at(step) for step in range(STEPS)])
    assert () in reused  # the step after the change recomputed every context value
    halved = original * 0.5
    fresh_tensors, _, _, _ = run([original.clone] * CHANGED_AT + [halved.clone] * (STEPS - CHANGED_AT))
    assert_same(changed, fresh_tensors)
    unchanged, _, _, _ = run([lambda: original] * STEPS)
    assert not torch.allclose(changed[CHANGED_AT], unchanged[CHANGED_AT], atol=1e-4)  # the change shows


def test_inference_tensors_are_never_taken_as_unchanged():
    """They keep no version counter, so an in-place change could not be seen: recompute."""
    text = torch.randn(2, TEXT_TOKENS, CAPTION_CHANNELS, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        frozen = text.clone()
    outputs, _, reused, _ = run([lambda: frozen] * STEPS)
    reference, _, _, _ = run([lambda: text] * STEPS)
    assert reused == {()}
    assert_same(outputs, reference)
