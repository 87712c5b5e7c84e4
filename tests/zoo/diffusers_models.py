"""Tiny diffusers transformers whose size the property tests draw (layers, heads, widths, grids,
batch): PixArt, DiT, SD3 and FLUX. Every builder returns a :class:`~zoo.case.Case` whose
``call(model, x, t)`` maps latents ``x`` to a prediction of the same shape. The roster
(``roster.py``) has one fixed tiny config for every diffusers class."""

from __future__ import annotations

import diffusers
import torch

from .case import Case

CAPTION_CHANNELS = 12
TEXT_TOKENS = 5


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator)


def _eval(model: torch.nn.Module) -> torch.nn.Module:
    return model.eval()


# -- image models ---------------------------------------------------------------------------------
def tiny_pixart(layers=2, heads=2, head_dim=8, patch=2, seed=0, sample_size=8) -> diffusers.PixArtTransformer2DModel:
    torch.manual_seed(seed)
    return diffusers.PixArtTransformer2DModel(
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


def tiny_dit(layers=2, heads=2, head_dim=8, patch=2, seed=0, classes=10) -> diffusers.DiTTransformer2DModel:
    torch.manual_seed(seed)
    return diffusers.DiTTransformer2DModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=4,
        out_channels=8,
        num_layers=layers,
        sample_size=8,
        patch_size=patch,
        num_embeds_ada_norm=classes,
    ).eval()


def tiny_sd3(layers=2, seed=0) -> diffusers.SD3Transformer2DModel:
    torch.manual_seed(seed)
    return diffusers.SD3Transformer2DModel(
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


def tiny_flux(double=1, single=2, seed=0, in_channels=4) -> diffusers.FluxTransformer2DModel:
    torch.manual_seed(seed)
    return diffusers.FluxTransformer2DModel(
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


def pixart_case(layers=2, heads=2, head_dim=8, batch=2, grid=(4, 4), seed=0) -> Case:
    model = tiny_pixart(layers, heads, head_dim, seed=seed)
    context = _randn(batch, TEXT_TOKENS, CAPTION_CHANNELS, generator=_generator(seed + 1))
    mask = torch.ones(batch, TEXT_TOKENS)
    mask[:, -1] = 0  # a padded caption token, as real prompts have

    def call(m, x, t):
        return m(x, encoder_hidden_states=context, timestep=t, encoder_attention_mask=mask).sample

    return Case("pixart", model, call, batch, 2 * grid[0], 2 * grid[1])


def dit_case(layers=2, heads=2, head_dim=8, batch=2, grid=(4, 4), seed=0) -> Case:
    model = tiny_dit(layers, heads, head_dim, seed=seed)
    labels = torch.arange(batch) % 10

    def call(m, x, t):
        return m(x, timestep=t, class_labels=labels).sample

    return Case("dit", model, call, batch, 2 * grid[0], 2 * grid[1])


def sd3_case(layers=2, batch=2, seed=0) -> Case:
    """Two token streams of different lengths (image and text) with joint attention."""
    model = tiny_sd3(layers, seed=seed)
    generator = _generator(seed + 1)
    text, pooled = _randn(batch, TEXT_TOKENS, 16, generator=generator), _randn(batch, 16, generator=generator)

    def call(m, x, t):
        return m(hidden_states=x, encoder_hidden_states=text, pooled_projections=pooled, timestep=t).sample

    return Case("sd3", model, call, batch, 8, 8)


def _packed(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) latents as (B, H/p * W/p, C*p*p) tokens, the packing FLUX-like pipelines do."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


def _unpacked(tokens: torch.Tensor, shape, patch: int) -> torch.Tensor:
    b, c, h, w = shape
    x = tokens.reshape(b, h // patch, w // patch, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(shape)


def _image_ids(h: int, w: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3)


def flux_case(batch=1, grid=(4, 4), seed=0) -> Case:
    """FLUX: packed latent tokens, RoPE, double-stream and single-stream (parallel) blocks."""
    model = tiny_flux(seed=seed)
    generator = _generator(seed + 1)
    text, pooled = _randn(batch, TEXT_TOKENS, 32, generator=generator), _randn(batch, 32, generator=generator)
    img_ids, txt_ids = _image_ids(*grid), torch.zeros(TEXT_TOKENS, 3)

    def call(m, x, t):
        out = m(
            hidden_states=_packed(x, 1),
            encoder_hidden_states=text,
            pooled_projections=pooled,
            timestep=t / 1000,
            img_ids=img_ids,
            txt_ids=txt_ids,
        ).sample
        return _unpacked(out, x.shape, 1)

    return Case("flux", model, call, batch, *grid)
