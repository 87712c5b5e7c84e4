"""Fallbacks: what the analysis cannot prove partial is reused whole; what cannot be cached at all
runs exactly, with one warning naming the reason.

Hand-written cases: a model with no residual branch at all, a block whose MLP mixes pairs of
tokens through a reshape (token-local nowhere), a block whose MLP shifts tokens with ``torch.roll``
(an op the token analysis does not know), and one whose branch draws random numbers. The roll and
the pair-mixing are real token mixing: taking them for token-local would give wrong output.
"""

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


def test_a_model_without_residual_branches_runs_exactly_with_one_warning(caplog):
    case = odd_case(None, cacheable_blocks=0)
    reference = sample(case, case.model, STEPS)
    with caplog.at_level("WARNING", logger="toca_fx"):
        toca, model = compile_toca(case, "fora", **AGGRESSIVE)
        outputs = sample(case, model, STEPS)
    assert all(torch.equal(a, b) for a, b in zip(outputs, reference))
    warnings = toca_warnings(caplog.records)
    reason = "no residual branch over a token stream"
    assert len(warnings) == 1 and "nothing cacheable" in warnings[0] and reason in warnings[0]
    assert toca.fallbacks == [reason]


def test_an_unprovable_site_is_reused_whole_beside_partial_ones():
    """An op the token analysis does not know (torch.roll): the site cannot run on fresh tokens,
    but its output can be served whole from its cache, as FORA does. At every partial step its
    output is the cache of the last full step, while the ordinary block stays partial."""
    case = odd_case("roll")
    recorder = Recorder()
    toca, model = compile_toca(case, "pixart-alpha", inner_compiler=recorder, self_check=False, **AGGRESSIVE)
    x = case.latents()
    with torch.no_grad():
        for step, t in enumerate(torch.linspace(999, 0, STEPS).round().long()):
            case.call(model, x, t.reshape(1))
            (odd,) = [s for i, s in enumerate(toca.sites) if "roll" in s.reason]
            cache = f"toca_cache_{toca.sites.index(odd)}"
            if step == 0:
                full = recompute_branch(odd, recorder.values)
            else:
                assert torch.equal(recorder.values[cache], full)  # reused, not recomputed
    assert odd.policy == "reuse" and "unknown op 'roll'" in odd.reason
    assert toca.stats["partial_steps"] == STEPS - 1
    assert {s.policy for s in toca.sites} == {"reuse", "partial"}


class NoisyMLP(nn.Module):
    """A residual branch that draws random numbers at every call (dropout in training mode)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x, cond):
        return x + self.fc2(torch.nn.functional.dropout(self.fc1(x), p=0.5, training=True))


def test_a_branch_that_draws_random_numbers_is_recomputed_at_every_step():
    """Reusing it would replay one step's draw at another: the one case where reuse is unsound."""
    case = odd_case(None, cacheable_blocks=1)
    torch.manual_seed(1)
    case.model.blocks.append(NoisyMLP(case.model.dim))
    toca, model = compile_toca(case, "pixart-alpha", **AGGRESSIVE)
    sample(case, model, STEPS)
    (noisy,) = [s for s in toca.sites if s.policy == "full"]
    assert "random numbers" in noisy.reason and noisy.block == "blocks.1"
    assert toca.stats["partial_steps"] == STEPS - 1


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

    def broken(gm, placement):
        raise RuntimeError("simulated analysis bug")

    monkeypatch.setattr(toca_fx.backend, "analyse", broken)
    with caplog.at_level("WARNING", logger="toca_fx"):
        toca, model = compile_toca(case, "fora", **AGGRESSIVE)
        outputs = sample(case, model, STEPS)
    assert all(torch.equal(a, b) for a, b in zip(outputs, reference))
    warnings = toca_warnings(caplog.records)
    assert len(warnings) == 1 and "simulated analysis bug" in warnings[0]
