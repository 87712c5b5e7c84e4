"""The token rule on hand-made branches: token-local ops run on fresh tokens, mixing ops are reused,
unknown ops fall back to full recompute, and the fake-tensor proof catches a wrong rewrite."""

import dataclasses
import math

import pytest
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.fake_tensor_prop import FakeTensorProp

import toca_fx
from toca_fx.contract import SitePolicy
from toca_fx.lowering import SDPA_FUNCTIONS, fake_mode
from toca_fx.passes.prove import prove_at_token_count
from toca_fx.passes.sites import Site
from toca_fx.passes.tokens import Unprovable, trace_tokens

from harness import compile_toca, hand_case, sample


class Residual(nn.Module):
    def __init__(self, branch):
        super().__init__()
        self.branch = branch

    def forward(self, x):
        return x + self.branch(x)


class LinearAttention(nn.Module):
    """Sana-style linear attention: k^T v contracts over the token axis, so it mixes tokens."""

    def __init__(self, dim=8):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        q, k, v = F.relu(self.q(x)), F.relu(self.k(x)), self.v(x)
        return self.o(q @ (k.transpose(1, 2) @ v))


class TokenSoftmax(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.a, self.b = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):
        return self.b(torch.softmax(self.a(x), dim=1))


class UnknownOp(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.a, self.b = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):
        return self.b(torch.cumsum(self.a(x), dim=-1))


class ChannelMLP(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.a, self.b = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.b(F.silu(self.a(F.layer_norm(x, x.shape[-1:])))).softmax(dim=-1)


class FrameReshapeMLP(nn.Module):
    """Rows regrouped across frames (B, T*S, C) -> (B*T, S, C): the rows are no longer the stream's."""

    def __init__(self, dim=8):
        super().__init__()
        self.a = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        return self.a(x.reshape(b * 2, n // 2, c)).reshape(b, n, c)


class SliceAttendRecat(nn.Module):
    """HunyuanVideo single-stream style: attention over two slices of the stream put back in order,
    joined with an MLP by one projection: a mixed site."""

    def __init__(self, dim=8):
        super().__init__()
        self.q, self.mlp, self.o = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(2 * dim, dim)

    def forward(self, x):
        h = self.q(x)
        first, rest = h[:, :4], h[:, 4:]
        q = torch.cat([first, rest], dim=1)
        attn = F.scaled_dot_product_attention(q, q, q)
        return self.o(torch.cat([attn, F.gelu(self.mlp(x))], dim=2))


class JoinedRowsMLP(nn.Module):
    """CogVideoX style: an MLP over the stream joined with other rows, the stream's rows sliced back."""

    def __init__(self, dim=8):
        super().__init__()
        self.a = nn.Linear(dim, dim)
        self.register_buffer("other", torch.randn(1, 3, dim))

    def forward(self, x):
        joined = torch.cat([self.other.expand(x.shape[0], -1, -1), x], dim=1)
        return self.a(joined)[:, 3:]


class JoinedRowsAttention(nn.Module):
    """Attention over the stream joined with other rows (joint attention): reused as joint attention."""

    def __init__(self, dim=8):
        super().__init__()
        self.a = nn.Linear(dim, dim)
        self.register_buffer("other", torch.randn(1, 3, dim))

    def forward(self, x):
        joined = self.a(torch.cat([self.other.expand(x.shape[0], -1, -1), x], dim=1))
        return F.scaled_dot_product_attention(joined, joined, joined)[:, 3:]


def sites_of(branch):
    torch._dynamo.reset()
    toca = toca_fx.ToCa(compiler="eager", num_steps=2)
    model = torch.compile(Residual(branch).eval(), backend=toca)
    with torch.no_grad():
        model(torch.randn(2, 6, 8))
    return toca.sites


@pytest.mark.parametrize(
    ("branch", "kind", "policy", "reason"),
    [
        (ChannelMLP(), "mlp", "partial", ""),
        (LinearAttention(), "self_attention", "reuse", "token-mixing"),
        (TokenSoftmax(), "self_attention", "reuse", "token-mixing"),
        (FrameReshapeMLP(), "mlp", "reuse", "token-mixing"),
        (SliceAttendRecat(), "mixed", "partial", ""),
        (JoinedRowsMLP(), "mlp", "partial", ""),
        (JoinedRowsAttention(), "joint_attention", "reuse", "token-mixing"),
        (UnknownOp(), "mlp", "reuse", "unknown op 'cumsum'"),
    ],
)
def test_token_rule(branch, kind, policy, reason):
    (site,) = sites_of(branch)
    assert (site.kind, site.policy) == (kind, policy)
    assert reason in site.reason


def test_parallel_block_is_mixed_with_attention_rows_from_cache():
    case = hand_case(layers=2, context=False, parallel=True)
    toca, model = compile_toca(case, compiler="eager", num_steps=2)
    sample(case, model, 1)
    assert [(s.kind, s.policy) for s in toca.sites] == [("mixed", "partial")] * 2
    for site in toca.sites:
        (interior,) = site.interior
        assert interior.meta["example_value"].shape[:2] == site.stream.meta["example_value"].shape[:2]
        assert site.attention is not None and site.attention not in site.fresh_nodes()


def test_fake_tensor_proof_rejects_a_missed_token_count():
    case = hand_case(layers=1)
    toca, model = compile_toca(case, compiler="eager", num_steps=2)
    sample(case, model, 1)
    (cross,) = [s for s in toca.sites if s.kind == "cross_attention"]
    prove_at_token_count(cross, 5)  # the analysed rewrite holds
    broken = dataclasses.replace(cross, flow=dataclasses.replace(cross.flow, token_args={}))
    with pytest.raises(Unprovable, match="fake-tensor check at 5 tokens failed"):
        prove_at_token_count(broken, 5)


# -- context parallelism: diffusers' Ulysses attention, traced without processes ---------------------
B, N, H, D, RANKS, TEXT = 1, 6, 4, 8, 2, 4
c10d = torch.ops._c10d_functional


def _exchange(x, shape):
    """diffusers' ``_all_to_all_single``: flatten, swap equal parts with the peers, reshape back."""
    part = math.prod(shape) // RANKS
    return c10d.wait_tensor(c10d.all_to_all_single(x.flatten(), [part] * RANKS, [part] * RANKS, "0")).reshape(shape)


def _to_heads(x, tokens):
    """(B, tokens, H*D) sharded by tokens -> (B, H/w, RANKS*tokens, D) sharded by heads."""
    x = x.reshape(B, tokens, RANKS, H // RANKS, D).permute(2, 1, 0, 3, 4).contiguous()
    return _exchange(x, (RANKS, tokens, B, H // RANKS, D)).flatten(0, 1).permute(1, 2, 0, 3)


def _to_tokens(out):
    out = out.permute(0, 2, 1, 3).reshape(B, RANKS, N, H // RANKS, D).permute(1, 3, 0, 2, 4).contiguous()
    return _exchange(out, (RANKS, H // RANKS, B, N, D)).flatten(0, 1).permute(1, 2, 0, 3).flatten(2, 3)


def ulysses_self_attention(x, w):
    q = _to_heads(F.linear(x, w), N)
    return _to_tokens(F.scaled_dot_product_attention(q, q, q))


def ulysses_cross_attention(x, w, text):
    k = _to_heads(text, TEXT)
    return _to_tokens(F.scaled_dot_product_attention(_to_heads(F.linear(x, w), N), k, k))


def _traced(fn, *inputs):
    gm = fx.symbolic_trace(fn)
    with fake_mode() as mode:
        FakeTensorProp(gm, mode).propagate(*inputs)
    nodes = [n for n in gm.graph.nodes if n.op != "output"]
    return nodes, trace_tokens(nodes, nodes[0])


def test_ulysses_exchange_keeps_the_token_axis():
    """Tokens -> heads: the leading axis indexes the peer ranks, merged into a gathered token axis
    (every rank's tokens) for SDPA, which mixes them; heads -> tokens: this rank's tokens at dim 1."""
    nodes, flow = _traced(ulysses_self_attention, torch.randn(B, N, H * D), torch.randn(H * D, H * D))
    exchanges = [n for n in nodes if n.target is c10d.all_to_all_single]
    (sdpa,) = [n for n in nodes if n.target in SDPA_FUNCTIONS]
    assert [flow.token_args[n] for n in exchanges] == [("exchange", B * H * D // RANKS)] * 2
    assert flow.gathered[sdpa] == RANKS and flow.mixing == {sdpa}
    assert flow.dims[nodes[-1]] == 1 and nodes[-1] not in flow.gathered


def test_ulysses_cross_attention_is_proven_on_fresh_tokens():
    """Keys from the text: token-local per rank. At n fresh tokens the all-to-all split sizes and the
    reshapes are rewritten for n, which the fake-tensor proof runs."""
    inputs = torch.randn(B, N, H * D), torch.randn(H * D, H * D), torch.randn(B, TEXT, H * D)
    nodes, flow = _traced(ulysses_cross_attention, *inputs)
    assert not flow.mixing and flow.dims[nodes[-1]] == 1
    branch = [n for n in nodes[1:] if n in flow.dims]
    site = Site("", "cross_attention", SitePolicy.PARTIAL, "", nodes[0], nodes[-1], None, branch, flow)
    prove_at_token_count(site, 2)
    with pytest.raises(Unprovable):  # the split sizes left at N: the exchange is the wrong size
        prove_at_token_count(dataclasses.replace(site, flow=dataclasses.replace(flow, token_args={})), 2)
