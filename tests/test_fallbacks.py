"""Fallbacks: what the analysis cannot handle runs exactly, with one warning naming the reason.

Three hand-written cases: a model with no residual branch at all, a block whose MLP mixes pairs
of tokens through a reshape (token-local nowhere, so it cannot be proven), and a block whose MLP
shifts tokens with ``torch.roll`` (an op the token analysis does not know). The roll and the
pair-mixing are real token mixing: taking them for token-local would give wrong output.
"""

import pytest
import torch
import torch.nn as nn

import toca_fx

from harness import Recorder, compile_toca, hand_case, recompute_branch, sample

STEPS = 6
AGGRESSIVE = dict(compiler="eager", num_steps=STEPS, interval=STEPS, interval_step_weight=0.0)


class OddMLP(nn.Module):
    """A residual MLP block around a token-mixing op the analysis must not treat as local."""

    def __init__(self, dim: int, odd: str):
        super().__init__()
        self.odd = odd
        self.norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.pair = nn.Linear(4 * dim, 4 * dim)

    def forward(self, x, cond):
        h = torch.nn.functional.gelu(self.fc1(self.norm(x)))
        if self.odd == "roll":
            h = torch.roll(h, 1, dims=1)
        else:  # mix each pair of neighbouring tokens
            b, n, c = h.shape
            h = self.pair(h.reshape(b, n // 2, 2 * c)).reshape(b, n, c)
        return x + self.fc2(h)


def odd_case(odd: str | None, cacheable_blocks: int = 1):
    """HandDiT with ``cacheable_blocks`` ordinary blocks, then one OddMLP block (none: no block)."""
    case = hand_case(layers=max(cacheable_blocks, 1), heads=1, batch=1, context=False)
    blocks = list(case.model.blocks)[:cacheable_blocks]
    if odd is not None:
        torch.manual_seed(1)
        blocks.append(OddMLP(case.model.dim, odd))
    case.model.blocks = nn.ModuleList(blocks).eval()
    return case


def toca_warnings(records) -> list[str]:
    return [r.getMessage() for r in records if r.name == "toca_fx" and r.levelname == "WARNING"]


@pytest.mark.parametrize(
    "odd, reason",
    [(None, "no residual branch over a token stream"), ("roll", "unknown op 'roll'")],
    ids=["no residual branch", "only an unknown op"],
)
def test_a_model_with_nothing_cacheable_runs_exactly_with_one_warning(odd, reason, caplog):
    case = odd_case(odd, cacheable_blocks=0)
    reference = sample(case, case.model, STEPS)
    with caplog.at_level("WARNING", logger="toca_fx"):
        toca, model = compile_toca(case, "fora", **AGGRESSIVE)
        outputs = sample(case, model, STEPS)
    assert all(torch.equal(a, b) for a, b in zip(outputs, reference))
    warnings = toca_warnings(caplog.records)
    assert len(warnings) == 1 and "nothing cacheable" in warnings[0] and reason in warnings[0]
    assert toca.fallbacks == [reason] if odd is None else reason in toca.fallbacks[0]


@pytest.mark.parametrize("odd, reason", [("roll", "unknown op 'roll'")], ids=["roll"])
def test_an_unprovable_site_recomputes_exactly_beside_cached_ones(odd, reason, caplog):
    """At partial steps the ordinary block is served from its cache while the odd block's branch
    still equals an eager recompute on the step's own input; one warning names the reason."""
    case = odd_case(odd)
    recorder = Recorder()
    with caplog.at_level("WARNING", logger="toca_fx"), torch.no_grad():
        toca, model = compile_toca(case, "pixart-alpha", inner_compiler=recorder, **AGGRESSIVE)
        x = case.latents()
        for step, t in enumerate(torch.linspace(999, 0, STEPS).round().long()):
            case.call(model, x, t.reshape(1))
            if step == 0:
                continue
            odd_site = [s for s in toca.sites if s.policy == "full"]
            assert len(odd_site) == 1 and reason in odd_site[0].reason
            value = recorder.values[odd_site[0].output.name]
            assert torch.equal(value, recompute_branch(odd_site[0], recorder.values))
    assert toca.stats["partial_steps"] == STEPS - 1
    assert {s.policy for s in toca.sites} == {"reuse", "partial", "full"}
    warnings = toca_warnings(caplog.records)
    assert len(warnings) == 1 and reason in warnings[0] and "recompute every token" in warnings[0]


def test_a_branch_that_mixes_pairs_of_tokens_is_reused_never_partial():
    """Pairing neighbouring tokens mixes them: the site is a mixing site, served whole from its cache."""
    case = odd_case("pair")
    toca, model = compile_toca(case, "pixart-alpha", **AGGRESSIVE)
    sample(case, model, STEPS)
    mlp_policies = sorted(s.policy for s in toca.sites if s.kind == "mlp")
    assert mlp_policies == ["partial", "reuse"]
    assert all("token-mixing" in s.reason for s in toca.sites if s.policy == "reuse")


def test_an_analysis_crash_runs_the_graph_uncached_with_one_warning(caplog, monkeypatch):
    case = odd_case(None, cacheable_blocks=1)
    reference = sample(case, case.model, STEPS)

    def broken(gm):
        raise RuntimeError("simulated analysis bug")

    monkeypatch.setattr(toca_fx.backend, "analyse", broken)
    with caplog.at_level("WARNING", logger="toca_fx"):
        toca, model = compile_toca(case, "fora", **AGGRESSIVE)
        outputs = sample(case, model, STEPS)
    assert all(torch.equal(a, b) for a, b in zip(outputs, reference))
    warnings = toca_warnings(caplog.records)
    assert len(warnings) == 1 and "simulated analysis bug" in warnings[0]
