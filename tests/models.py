"""Tiny models for the tests: diffusers DiT/PixArt from configs, and a hand-written DiT."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DiTTransformer2DModel, FluxTransformer2DModel, PixArtTransformer2DModel, SD3Transformer2DModel

CAPTION_CHANNELS = 12


def tiny_pixart(layers=2, heads=2, head_dim=8, patch=2, seed=0, sample_size=8) -> PixArtTransformer2DModel:
    torch.manual_seed(seed)
    return PixArtTransformer2DModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=4,
        out_channels=8,
        num_layers=layers,
        cross_attention_dim=heads * head_dim,
        sample_size=sample_size,
        patch_size=patch,
        caption_channels=CAPTION_CHANNELS,
        norm_type="ada_norm_single",
        use_additional_conditions=False,
    ).eval()


def tiny_dit(layers=2, heads=2, head_dim=8, patch=2, seed=0, classes=10) -> DiTTransformer2DModel:
    torch.manual_seed(seed)
    return DiTTransformer2DModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=4,
        out_channels=8,
        num_layers=layers,
        sample_size=8,
        patch_size=patch,
        num_embeds_ada_norm=classes,
    ).eval()


def tiny_sd3(layers=2, seed=0) -> SD3Transformer2DModel:
    torch.manual_seed(seed)
    return SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=4,
        num_layers=layers,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_projection_dim=16,
        joint_attention_dim=16,
        pooled_projection_dim=16,
        out_channels=4,
    ).eval()


def tiny_flux(double=1, single=2, seed=0, in_channels=4) -> FluxTransformer2DModel:
    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=in_channels,
        num_layers=double,
        num_single_layers=single,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    ).eval()


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
