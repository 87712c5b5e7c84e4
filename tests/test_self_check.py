"""The self-check: a wrong FULL or PARTIAL variant is caught at its first call, and the model then
runs uncached and exact, with one warning naming the diverging output. Faults are injected into
the rewrite; the check must see them, and stay silent on correct rewrites."""

import operator

import pytest
import torch

import toca_fx.runtime.variants as variants
from toca_fx import selection

from harness import compile_toca, pixart_case, sample


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "toca_fx" and r.levelname == "WARNING"]


def corrupt_first_output(build):
    """A rewrite whose variant adds 1 to the model's first output: wrong by construction."""

    def wrong(*args, **kwargs):
        variant = build(*args, **kwargs)
        graph = variant.module.graph
        output = graph.output_node()
        first = output.args[0][0]
        with graph.inserting_before(output):
            shifted = graph.call_function(operator.add, (first, 1.0))
        output.args = ((shifted, *output.args[0][1:]),)
        variant.module.recompile()
        return variant

    return wrong


def doubled_scatter(cache, idx, values, dim=1, batch_dim=0, scatter=selection.scatter_tokens_):
    """A scatter that writes twice the fresh values: a wrong partial rewrite."""
    return scatter(cache, idx, 2 * values, dim, batch_dim)


@pytest.mark.parametrize("variant", ["FULL", "PARTIAL"])
def test_a_wrong_variant_is_caught_and_the_model_runs_exactly(monkeypatch, caplog, variant):
    case = pixart_case(layers=1)
    reference = sample(case, case.model, 6)
    if variant == "FULL":
        monkeypatch.setattr(variants, "build_full", corrupt_first_output(variants.build_full))
    else:
        monkeypatch.setattr(selection, "scatter_tokens_", doubled_scatter)
    with caplog.at_level("WARNING", logger="toca_fx"):
        toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=6)
        outputs = sample(case, model, 6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(outputs, reference, strict=True))
    (warning,) = [w for w in _warnings(caplog) if "self-check" in w]
    assert f"{variant} variant output 0 differs from the original graph's" in warning
    assert toca.regions[0].failure and toca.stats["partial_steps"] == 0


def test_correct_variants_pass_and_the_check_can_be_switched_off(caplog):
    case = pixart_case(layers=1)
    for self_check in (True, False):
        with caplog.at_level("WARNING", logger="toca_fx"):
            toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=6, self_check=self_check)
            sample(case, model, 6)
        assert not [w for w in _warnings(caplog) if "self-check" in w]
        assert toca.stats["partial_steps"] > 0 and not toca.regions[0].failure
        assert bool(toca.regions[0].checked) is self_check
