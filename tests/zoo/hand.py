"""Hand-written DiTs, no diffusers: original-DiT style (fused qkv, adaLN-Zero) and OpenSora style (spatial-temporal)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .case import Case

TEXT_TOKENS = 5


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    freqs = torch.exp(-torch.arange(dim // 2, dtype=torch.float32) * (4.0 / (dim // 2)))
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class FusedQKVBlock(nn.Module):
    """Original-DiT style block: one qkv projection reshaped with a literal token count, adaLN-Zero."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        b, n, d = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)
        h = self.norm1(x) * (1 + scale1.unsqueeze(1)) + shift1.unsqueeze(1)
        qkv = self.qkv(h).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + gate1.unsqueeze(1) * self.proj(attn)
        h = self.norm2(x) * (1 + scale2.unsqueeze(1)) + shift2.unsqueeze(1)
        return x + gate2.unsqueeze(1) * self.mlp(h)


class ParallelBlock(nn.Module):
    """FLUX single-stream style: attention and MLP side by side, merged by one output projection."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.mlp_in = nn.Linear(dim, 4 * dim)
        self.proj_out = nn.Linear(5 * dim, dim)

    def forward(self, x, c):
        b, _, d = x.shape
        shift, scale, gate = self.ada(c).chunk(3, dim=1)
        h = self.norm(x) * (1 + scale[:, None]) + shift[:, None]
        q, k, v = (
            f(h).view(b, -1, self.heads, d // self.heads).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v)
        )
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, d)
        mlp = F.gelu(self.mlp_in(h), approximate="tanh")
        return x + gate[:, None] * self.proj_out(torch.cat([attn, mlp], dim=2))


class LiteralCrossAttention(nn.Module):
    """Cross-attention that bakes the token count into its reshapes, as hand-written code often does."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, x, context):
        b, n, d = x.shape
        m = context.shape[1]
        q = self.q(x).reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(context).reshape(b, m, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        return x + self.proj(out)


class HandDiT(nn.Module):
    """A DiT written without diffusers. ``graph_break`` splits the blocks into two Dynamo graphs;
    ``context_dim`` adds a cross-attention (over ``context``) after each block; ``parallel`` uses
    FLUX-single-style parallel blocks."""

    def __init__(
        self, layers=2, dim=16, heads=2, patch=2, channels=4, graph_break=False, context_dim=0, parallel=False, seed=0
    ):
        super().__init__()
        torch.manual_seed(seed)
        self.patch, self.dim, self.graph_break = patch, dim, graph_break
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.t_embed = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        block = ParallelBlock if parallel else FusedQKVBlock
        self.blocks = nn.ModuleList(block(dim, heads) for _ in range(layers))
        self.context = nn.Linear(context_dim, dim) if context_dim else None
        self.cross = nn.ModuleList(LiteralCrossAttention(dim, heads) for _ in range(layers if context_dim else 0))
        self.out = nn.Linear(dim, patch * patch * channels)
        self.eval()

    def forward(self, x, timestep, context=None):
        b, c, h, w = x.shape
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        cond = self.t_embed(timestep_embedding(timestep, self.dim))
        context = self.context(context) if self.context is not None else None
        for i, block in enumerate(self.blocks):
            if self.graph_break and i == len(self.blocks) // 2:
                torch._dynamo.graph_break()
            tokens = block(tokens, cond)
            if self.cross:
                tokens = self.cross[i](tokens, context)
        p = self.patch
        out = self.out(tokens).reshape(b, h // p, w // p, p, p, c)
        return out.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


class Attention(nn.Module):
    """Multi-head attention over ``x`` (self) or over ``context`` (cross), SDPA core."""

    def __init__(self, dim, heads, context_dim=None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context=None):
        b, n, d = x.shape
        context = x if context is None else context
        q = self.q(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class SpatialTemporalBlock(nn.Module):
    """OpenSora (STDiT) block on a (B, T*S, C) stream: spatial attention over the S tokens of each
    frame and temporal attention over the T frames of each position, with reshapes in between,
    then cross-attention to text and an adaLN-modulated MLP."""

    def __init__(self, dim, heads, frames, context_dim):
        super().__init__()
        self.frames = frames
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.spatial = Attention(dim, heads)
        self.temporal = Attention(dim, heads)
        self.cross = Attention(dim, heads, context_dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(self, x, t, context):
        b, n, d = x.shape
        f, s = self.frames, n // self.frames
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.scale_shift_table[None] + t.reshape(b, 6, -1)).chunk(6, 1)
        h = self.norm1(x) * (1 + scale1) + shift1
        h = self.spatial(h.reshape(b * f, s, d)).reshape(b, n, d)
        x = x + gate1 * h
        h = x.reshape(b, f, s, d).transpose(1, 2).reshape(b * s, f, d)
        h = self.temporal(h).reshape(b, s, f, d).transpose(1, 2).reshape(b, n, d)
        x = x + gate1 * h
        x = x + self.cross(x, context)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class SpatialTemporalDiT(nn.Module):
    """An OpenSora-style video DiT written without diffusers: 3-D patchify to (B, T*S, C), STDiT blocks."""

    def __init__(self, layers=2, dim=16, heads=2, frames=2, patch=2, channels=4, context_dim=6, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch, self.dim = patch, dim
        self.embed = nn.Conv3d(channels, dim, (1, patch, patch), stride=(1, patch, patch))
        self.t_embed = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.context = nn.Linear(context_dim, dim)
        self.blocks = nn.ModuleList(SpatialTemporalBlock(dim, heads, frames, dim) for _ in range(layers))
        self.out = nn.Linear(dim, patch * patch * channels)
        self.eval()

    def forward(self, x, timestep, context):
        b, c, f, h, w = x.shape
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (B, F*H'*W', C), frame-major
        t = self.t_embed(timestep_embedding(timestep, self.dim))
        context = self.context(context)
        for block in self.blocks:
            tokens = block(tokens, t, context)
        p = self.patch
        out = self.out(tokens).reshape(b, f, h // p, w // p, p, p, c)
        return out.permute(0, 6, 1, 2, 4, 3, 5).reshape(b, c, f, h, w)


def hand_case(layers=2, heads=2, batch=2, grid=(4, 4), graph_break=False, context=True, parallel=False, seed=0) -> Case:
    model = HandDiT(
        layers,
        dim=8 * heads,
        heads=heads,
        graph_break=graph_break,
        context_dim=6 if context else 0,
        parallel=parallel,
        seed=seed,
    )
    text = torch.randn(batch, TEXT_TOKENS, 6, generator=torch.Generator().manual_seed(seed + 1))

    def call(m, x, t):
        return m(x, t, text if context else None)

    return Case("parallel" if parallel else "hand", model, call, batch, 2 * grid[0], 2 * grid[1])


def opensora_case(layers=2, heads=2, batch=2, frames=2, grid=(4, 4), seed=0) -> Case:
    model = SpatialTemporalDiT(layers, dim=8 * heads, heads=heads, frames=frames, seed=seed)
    text = torch.randn(batch, TEXT_TOKENS, 6, generator=torch.Generator().manual_seed(seed + 1))
    h, w = 2 * grid[0], 2 * grid[1]

    def call(m, x, t):
        return m(x, t, text)

    return Case("opensora", model, call, batch, h, w, shape=(batch, 4, frames, h, w))
