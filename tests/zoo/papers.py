"""Diffusion transformers written from their papers' architecture descriptions (no diffusers, no repository code).

They vary what a graph analysis has to see through: a sequence-first token stream with condition tokens and long
skips (U-ViT), timm-style fused qkv with an explicit softmax and guidance inside the forward (DiT), grouped-query
attention with 2-D RoPE, sandwich norm and a gated text path (Next-DiT), key/value compression by a strided conv over
the token grid (PixArt-Sigma), and joint attention over two streams with their own fused qkv (MM-DiT).

Gates that the papers zero-initialise (adaLN-Zero, tanh gates) are left randomly initialised here, so every branch
contributes to the output from the first step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .case import Case

TEXT_TOKENS = 6
TEXT_DIM = 24
NUM_CLASSES = 10


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """The sinusoidal timestep features of DDPM/DiT: cos and sin at geometrically spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of ``t`` followed by a two-layer MLP."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.dim))


def sincos_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position table (h*w, dim): half the channels encode the row, half the column."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    parts = [f(pos.flatten().float()[:, None] * omega) for pos in (rows, cols) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=1)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def mlp(dim, ratio=4):
    return nn.Sequential(nn.Linear(dim, ratio * dim), nn.GELU(approximate="tanh"), nn.Linear(ratio * dim, dim))


def unpatchify(tokens, batch, grid, patch, channels):
    """(B, gh*gw, p*p*C) -> (B, C, gh*p, gw*p), the inverse of a patch-size-strided conv."""
    (gh, gw), p = grid, patch
    out = tokens.reshape(batch, gh, gw, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return out.reshape(batch, channels, gh * p, gw * p)


def _generator(seed):
    return torch.Generator().manual_seed(seed)


# --- U-ViT (Bao et al., "All are Worth Words", CVPR 2023) ---------------------------------------------------------


class UViTBlock(nn.Module):
    """Pre-LN transformer block on a sequence-first (N, B, C) stream; an output-half block first joins its long
    skip by concatenating channels and projecting back with a linear layer."""

    def __init__(self, dim, heads, skip=False):
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads)  # batch_first=False: (N, B, C) in and out
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim)

    def forward(self, x, skip=None):
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class UViT(nn.Module):
    """U-ViT: time and class are two extra tokens in front of the image tokens, learned absolute positions,
    long skips from each shallow block to its mirror deep block, and a 3x3 conv after unpatchify."""

    def __init__(self, depth=3, dim=32, heads=2, patch=2, channels=4, grid=(4, 4), seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch, self.channels, self.grid = patch, channels, grid
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.time_embed = TimestepEmbedder(dim)
        self.label_embed = nn.Embedding(NUM_CLASSES, dim)
        self.extras = 2  # the time and class tokens
        self.pos_embed = nn.Parameter(0.02 * torch.randn(self.extras + grid[0] * grid[1], 1, dim))
        self.in_blocks = nn.ModuleList(UViTBlock(dim, heads) for _ in range(depth // 2))
        self.mid_block = UViTBlock(dim, heads)
        self.out_blocks = nn.ModuleList(UViTBlock(dim, heads, skip=True) for _ in range(depth // 2))
        self.norm = nn.LayerNorm(dim)
        self.decoder = nn.Linear(dim, patch * patch * channels)
        self.final_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.eval()

    def forward(self, x, t, y):
        b = x.shape[0]
        tokens = self.embed(x).flatten(2).permute(2, 0, 1)  # (N, B, C): the stream stays sequence-first
        cond = [self.time_embed(t)[None], self.label_embed(y)[None]]
        x = torch.cat([*cond, tokens], dim=0) + self.pos_embed
        skips = []
        for block in self.in_blocks:
            x = block(x)
            skips.append(x)
        x = self.mid_block(x)
        for block in self.out_blocks:
            x = block(x, skips.pop())
        x = self.decoder(self.norm(x))[self.extras :]  # the condition tokens carry no pixels
        out = unpatchify(x.transpose(0, 1), b, self.grid, self.patch, self.channels)
        return self.final_conv(out)


def uvit_case(batch=2, seed=0, depth=3, grid=(4, 4)) -> Case:
    """U-ViT (Bao et al. 2023): sequence-first nn.MultiheadAttention, pre-LN, time/class tokens, long skips,
    learned absolute positions."""
    model = UViT(depth, grid=grid, seed=seed)
    labels = torch.randint(NUM_CLASSES, (batch,), generator=_generator(seed + 1))

    def call(m, x, t):
        return m(x, t, labels)

    return Case("uvit", model, call, batch, 2 * grid[0], 2 * grid[1])


# --- DiT with classifier-free guidance (Peebles & Xie, "Scalable Diffusion Models with Transformers", 2023) --------


class TimmAttention(nn.Module):
    """timm's ViT attention: one qkv projection split by reshape/permute/unbind, softmax written out."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape  # Python ints under dynamic=False: the reshapes carry the token count
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        weights = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


class DiTBlock(nn.Module):
    """adaLN-Zero block: shift, scale and gate of both branches regressed from the timestep + class vector."""

    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = TimmAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(dim)
        # The paper zero-initialises this layer (identity blocks at init); random here so both gates are non-zero.
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """Class-conditional DiT with fixed 2-D sin-cos positions and a learned variance (2C output channels)."""

    def __init__(self, depth=2, dim=48, heads=3, patch=2, channels=4, grid=(6, 6), seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch, self.grid, self.out_channels = patch, grid, 2 * channels
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.register_buffer("pos_embed", sincos_2d(dim, *grid)[None], persistent=False)
        self.time_embed = TimestepEmbedder(dim)
        self.label_embed = nn.Embedding(NUM_CLASSES + 1, dim)  # the extra row is the null class for guidance
        self.blocks = nn.ModuleList(DiTBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.final = nn.Linear(dim, patch * patch * self.out_channels)

    def forward(self, x, t, y):
        b, p, (gh, gw) = x.shape[0], self.patch, self.grid
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.time_embed(t) + self.label_embed(y)
        for block in self.blocks:
            tokens = block(tokens, c)
        shift, scale = self.final_ada(c)[:, None].chunk(2, dim=-1)
        out = self.final(modulate(self.norm(tokens), shift, scale)).reshape(b, gh, gw, p, p, self.out_channels)
        return torch.einsum("bhwpqc->bchpwq", out).reshape(b, self.out_channels, gh * p, gw * p)


class ClassifierFreeGuidance(nn.Module):
    """DiT's guided sampling inside one forward: conditional and null-class halves run as one doubled batch."""

    def __init__(self, model, scale=4.0):
        super().__init__()
        self.model, self.scale = model, scale
        self.eval()

    def forward(self, x, t, y):
        null = torch.full_like(y, NUM_CLASSES)
        out = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        cond, uncond = out[:, : x.shape[1]].chunk(2)  # the variance channels serve the paper's sampler, not this one
        return uncond + self.scale * (cond - uncond)


def dit_cfg_case(batch=2, seed=0, depth=2, grid=(6, 6)) -> Case:
    """DiT (Peebles & Xie 2023) under classifier-free guidance: timm fused qkv with unbind and explicit softmax,
    adaLN-Zero from timestep + class, fixed 2-D sin-cos, batch doubled inside the forward, einsum unpatchify."""
    model = ClassifierFreeGuidance(DiT(depth, grid=grid, seed=seed))
    labels = torch.randint(NUM_CLASSES, (batch,), generator=_generator(seed + 1))

    def call(m, x, t):
        return m(x, t, labels)

    return Case("dit_cfg", model, call, batch, 2 * grid[0], 2 * grid[1])


# --- Next-DiT (Zhuo et al., "Lumina-Next", 2024) -------------------------------------------------------------------


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_2d(head_dim: int, height: int, width: int, theta: float = 10000.0) -> torch.Tensor:
    """Complex rotations (h*w, head_dim/2): the first half of each head's pairs turn with the row, the rest with the
    column, so any aspect ratio gets positions without a learned table."""
    quarter = head_dim // 4
    freqs = 1.0 / theta ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    angles = torch.cat([rows.flatten()[:, None] * freqs, cols.flatten()[:, None] * freqs], dim=1)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x, freqs):
    """Rotate (B, N, H, D) by complex multiplication with (N, D/2) rotations."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs[:, None]).flatten(-2).type_as(x)


class GroupedQueryAttention(nn.Module):
    """Self-attention with fewer key/value heads than query heads, q/k RMSNorm and 2-D RoPE, plus Lumina's
    tanh-gated attention of the same queries over the caption; both results share one output projection."""

    def __init__(self, dim, heads, kv_heads):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        kv_dim = kv_heads * self.head_dim
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, kv_dim, bias=False)
        self.wv = nn.Linear(dim, kv_dim, bias=False)
        self.q_norm, self.k_norm = RMSNorm(self.head_dim), RMSNorm(self.head_dim)
        self.wk_text = nn.Linear(dim, kv_dim, bias=False)
        self.wv_text = nn.Linear(dim, kv_dim, bias=False)
        self.k_text_norm = RMSNorm(self.head_dim)
        # Zero in the paper (the text path fades in during training); random here so it contributes.
        self.text_gate = nn.Parameter(torch.randn(heads))
        self.wo = nn.Linear(dim, dim, bias=False)

    def _attend(self, q, k, v):
        """(B, N, H, D) queries over (B, M, H_kv, D) keys/values -> (B, H, N, D)."""
        k, v = (a.repeat_interleave(self.heads // self.kv_heads, dim=2) for a in (k, v))
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))

    def forward(self, x, text, freqs):
        b, n, _ = x.shape
        m = text.shape[1]
        q = self.q_norm(self.wq(x).view(b, n, self.heads, self.head_dim))
        k = self.k_norm(self.wk(x).view(b, n, self.kv_heads, self.head_dim))
        v = self.wv(x).view(b, n, self.kv_heads, self.head_dim)
        out = self._attend(apply_rope(q, freqs), apply_rope(k, freqs), v)
        text_k = self.k_text_norm(self.wk_text(text).view(b, m, self.kv_heads, self.head_dim))
        text_v = self.wv_text(text).view(b, m, self.kv_heads, self.head_dim)
        # Caption tokens have no grid position, so this path uses the unrotated queries.
        out = out + self.text_gate.tanh()[:, None, None] * self._attend(q, text_k, text_v)
        return self.wo(out.transpose(1, 2).reshape(b, n, -1))


class SwiGLU(nn.Module):
    """LLaMA's gated feed-forward: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim, multiple_of=8):
        super().__init__()
        hidden = multiple_of * math.ceil(int(2 * 4 * dim / 3) / multiple_of)  # LLaMA sizing: 2/3 of 4*dim
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class NextDiTBlock(nn.Module):
    """Sandwich-norm block: RMSNorm before and after each branch, scale-only adaLN in, tanh gate out."""

    def __init__(self, dim, heads, kv_heads):
        super().__init__()
        self.attn_norm1, self.attn_norm2 = RMSNorm(dim), RMSNorm(dim)
        self.attn = GroupedQueryAttention(dim, heads, kv_heads)
        self.ffn_norm1, self.ffn_norm2 = RMSNorm(dim), RMSNorm(dim)
        self.ffn = SwiGLU(dim)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 4 * dim))

    def forward(self, x, c, text, freqs):
        scale_attn, gate_attn, scale_ffn, gate_ffn = self.ada(c)[:, None].chunk(4, dim=-1)
        h = self.attn(self.attn_norm1(x) * (1 + scale_attn), text, freqs)
        x = x + gate_attn.tanh() * self.attn_norm2(h)
        h = self.ffn(self.ffn_norm1(x) * (1 + scale_ffn))
        return x + gate_ffn.tanh() * self.ffn_norm2(h)


class NextDiT(nn.Module):
    """Next-DiT: linear patch embedding, no absolute positions (2-D RoPE only), adaLN from timestep + pooled caption,
    caption tokens attended inside each block's self-attention module."""

    def __init__(self, depth=2, dim=32, heads=4, kv_heads=2, patch=2, channels=4, grid=(4, 6), seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch, self.channels, self.grid = patch, channels, grid
        self.embed = nn.Linear(patch * patch * channels, dim)
        self.time_embed = TimestepEmbedder(dim)
        self.caption_pool = nn.Sequential(nn.LayerNorm(TEXT_DIM), nn.Linear(TEXT_DIM, dim))
        self.caption_embed = nn.Sequential(RMSNorm(TEXT_DIM), nn.Linear(TEXT_DIM, dim))
        self.register_buffer("freqs", rope_2d(dim // heads, *grid), persistent=False)
        self.blocks = nn.ModuleList(NextDiTBlock(dim, heads, kv_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim))
        self.final = nn.Linear(dim, patch * patch * channels)
        self.eval()

    def forward(self, x, t, caption):
        b, c, p, (gh, gw) = x.shape[0], self.channels, self.patch, self.grid
        patches = x.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, p * p * c)
        tokens = self.embed(patches)
        cond = self.time_embed(t) + self.caption_pool(caption.mean(dim=1))
        text = self.caption_embed(caption)
        for block in self.blocks:
            tokens = block(tokens, cond, text, self.freqs)
        scale = self.final_ada(cond)[:, None]
        return unpatchify(self.final(self.norm(tokens) * (1 + scale)), b, self.grid, p, c)


def nextdit_case(batch=2, seed=0, depth=2, grid=(4, 6)) -> Case:
    """Next-DiT / Lumina-Next (Zhuo et al. 2024): GQA with q/k RMSNorm and complex 2-D RoPE on a non-square grid,
    RMSNorm sandwich, tanh-gated scale-only adaLN, SwiGLU, gated caption attention sharing the output projection."""
    model = NextDiT(depth, grid=grid, seed=seed)
    caption = torch.randn(batch, TEXT_TOKENS, TEXT_DIM, generator=_generator(seed + 1))

    def call(m, x, t):
        return m(x, t, caption)

    return Case("nextdit", model, call, batch, 2 * grid[0], 2 * grid[1])


# --- PixArt-Sigma (Chen et al., "PixArt-Σ: Weak-to-Strong Training", 2024) ------------------------------------------


class KVCompressAttention(nn.Module):
    """Self-attention whose keys and values are downsampled on the 2-D token grid by a strided depthwise conv, so
    every query attends to n / ratio**2 tokens."""

    def __init__(self, dim, heads, ratio=2):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.compress = nn.Conv2d(2 * dim, 2 * dim, ratio, stride=ratio, groups=2 * dim)
        # The paper initialises the compression as the mean of each ratio x ratio window.
        nn.init.constant_(self.compress.weight, 1.0 / ratio**2)
        nn.init.zeros_(self.compress.bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, grid):
        b, n, c = x.shape
        head_dim = c // self.heads
        q = self.q(x).view(b, n, self.heads, head_dim).transpose(1, 2)
        kv = self.kv(x).transpose(1, 2).reshape(b, 2 * c, *grid)  # tokens back onto their grid
        kv = self.compress(kv).flatten(2).transpose(1, 2)  # (B, n / ratio**2, 2C)
        k, v = kv.reshape(b, -1, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    """Image queries over text keys/values, no modulation (PixArt's text path)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, text):
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.kv(text).view(b, text.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class PixArtBlock(nn.Module):
    """adaLN-single block: the six modulation vectors are the shared timestep table plus this block's offsets."""

    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = KVCompressAttention(dim, heads)
        self.cross = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(dim)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(self, x, t6, text, grid):
        mods = self.scale_shift_table[None] + t6.reshape(x.shape[0], 6, -1)
        shift1, scale1, gate1, shift2, scale2, gate2 = mods.chunk(6, dim=1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), grid)
        x = x + self.cross(x, text)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class PixArtSigma(nn.Module):
    """PixArt-Sigma: one timestep MLP feeds every block's modulation, fixed 2-D sin-cos positions, caption MLP."""

    def __init__(self, depth=2, dim=32, heads=2, patch=2, channels=4, grid=(8, 8), seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch, self.channels, self.grid = patch, channels, grid
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.register_buffer("pos_embed", sincos_2d(dim, *grid)[None], persistent=False)
        self.time_embed = TimestepEmbedder(dim)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))  # the single adaLN shared by all blocks
        self.caption_embed = nn.Sequential(nn.Linear(TEXT_DIM, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList(PixArtBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_table = nn.Parameter(torch.randn(2, dim) / dim**0.5)
        self.final = nn.Linear(dim, patch * patch * channels)
        self.eval()

    def forward(self, x, t, caption):
        b = x.shape[0]
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        t = self.time_embed(t)
        t6 = self.t_block(t)
        text = self.caption_embed(caption)
        for block in self.blocks:
            tokens = block(tokens, t6, text, self.grid)
        shift, scale = (self.final_table[None] + t[:, None]).chunk(2, dim=1)
        out = self.final(modulate(self.norm(tokens), shift, scale))
        return unpatchify(out, b, self.grid, self.patch, self.channels)


def pixart_sigma_case(batch=2, seed=0, depth=2, grid=(8, 8)) -> Case:
    """PixArt-Sigma (Chen et al. 2024): adaLN-single, cross-attention to a caption, keys/values compressed 2x2 by a
    strided conv over the token grid, fixed 2-D sin-cos."""
    model = PixArtSigma(depth, grid=grid, seed=seed)
    caption = torch.randn(batch, TEXT_TOKENS, TEXT_DIM, generator=_generator(seed + 1))

    def call(m, x, t):
        return m(x, t, caption)

    return Case("pixart_sigma", model, call, batch, 2 * grid[0], 2 * grid[1])


# --- MM-DiT (Esser et al., "Scaling Rectified Flow Transformers", SD3, 2024) ---------------------------------------


class MMDiTStream(nn.Module):
    """One modality's weights in an MM-DiT block: adaLN-Zero, one fused qkv with q/k RMSNorm, output projection and
    MLP. A ``pre_only`` stream only supplies keys and values (the text stream of the last block)."""

    def __init__(self, dim, heads, pre_only=False):
        super().__init__()
        self.heads, self.pre_only = heads, pre_only
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, (2 if pre_only else 6) * dim))
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        if not pre_only:
            self.proj = nn.Linear(dim, dim)
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.mlp = mlp(dim)

    def qkv_heads(self, x, c):
        """(B, N, H, D) queries, keys and values, plus the modulation for :meth:`update`."""
        mods = self.ada(c)[:, None].chunk(2 if self.pre_only else 6, dim=-1)
        b, n, d = x.shape
        qkv = self.qkv(modulate(self.norm1(x), mods[0], mods[1])).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.unbind(2)
        return self.q_norm(q), self.k_norm(k), v, mods

    def update(self, x, attn, mods):
        _, _, gate1, shift2, scale2, gate2 = mods
        x = x + gate1 * self.proj(attn)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class JointBlock(nn.Module):
    """Text and image streams with separate weights, one attention over cat(text, image) tokens."""

    def __init__(self, dim, heads, last=False):
        super().__init__()
        self.text = MMDiTStream(dim, heads, pre_only=last)
        self.image = MMDiTStream(dim, heads)

    def forward(self, text, x, c):
        m = text.shape[1]
        tq, tk, tv, text_mods = self.text.qkv_heads(text, c)
        xq, xk, xv, image_mods = self.image.qkv_heads(x, c)
        q, k, v = (torch.cat(pair, dim=1).transpose(1, 2) for pair in ((tq, xq), (tk, xk), (tv, xv)))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        x = self.image.update(x, out[:, m:], image_mods)
        if not self.text.pre_only:
            text = self.text.update(text, out[:, :m], text_mods)
        return text, x


class MMDiT(nn.Module):
    """MM-DiT: adaLN from timestep + pooled text vector, text tokens as a second stream, fixed 2-D sin-cos."""

    def __init__(self, depth=2, dim=64, heads=4, patch=2, channels=4, grid=(4, 4), pooled_dim=16, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch, self.channels, self.grid = patch, channels, grid
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.register_buffer("pos_embed", sincos_2d(dim, *grid)[None], persistent=False)
        self.time_embed = TimestepEmbedder(dim)
        self.pooled_embed = nn.Sequential(nn.Linear(pooled_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.context_embed = nn.Linear(TEXT_DIM, dim)
        self.blocks = nn.ModuleList(JointBlock(dim, heads, last=i == depth - 1) for i in range(depth))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.final = nn.Linear(dim, patch * patch * channels)
        self.eval()

    def forward(self, x, t, context, pooled):
        b = x.shape[0]
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.time_embed(t) + self.pooled_embed(pooled)
        text = self.context_embed(context)
        for block in self.blocks:
            text, tokens = block(text, tokens, c)
        shift, scale = self.final_ada(c)[:, None].chunk(2, dim=-1)
        out = self.final(modulate(self.norm(tokens), shift, scale))
        return unpatchify(out, b, self.grid, self.patch, self.channels)


def mmdit_case(batch=2, seed=0, depth=2, grid=(4, 4)) -> Case:
    """MM-DiT (Esser et al. 2024, SD3): per-stream fused qkv with q/k RMSNorm, joint attention over cat(text, image),
    adaLN-Zero from timestep + pooled text, pre-only text stream in the last block, fixed 2-D sin-cos."""
    model = MMDiT(depth, grid=grid, seed=seed)
    context = torch.randn(batch, TEXT_TOKENS, TEXT_DIM, generator=_generator(seed + 1))
    pooled = torch.randn(batch, 16, generator=_generator(seed + 2))

    def call(m, x, t):
        return m(x, t, context, pooled)

    return Case("mmdit", model, call, batch, 2 * grid[0], 2 * grid[1])


PAPER_CASES: dict[str, Callable[[], Case]] = {
    "UViT": uvit_case,
    "DiTCFG": dit_cfg_case,
    "NextDiT": nextdit_case,
    "PixArtSigma": pixart_sigma_case,
    "MMDiT": mmdit_case,
}
