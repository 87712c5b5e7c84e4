"""The token rule on hand-made branches: token-local ops run on fresh tokens, mixing ops are reused,
unknown ops fall back to full recompute, and the fake-tensor proof catches a wrong rewrite."""

import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import toca_fx
from toca_fx.passes.prove import prove_at_token_count
from toca_fx.passes.tokens import Unprovable

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
