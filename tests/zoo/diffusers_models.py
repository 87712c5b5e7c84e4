"""Tiny diffusers transformers with random weights, each with a call on image/video/audio latents.

Every builder returns a :class:`~zoo.case.Case` whose ``call(model, x, t)`` maps latents
``x`` to a prediction of the same shape. Sizes are as small as each class allows (two heads of
8-16 channels, 1-2 layers per block type, 16-64 tokens) so that a compile takes seconds on CPU.
"""

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


def auraflow_case(batch=2, seed=0) -> Case:
    """AuraFlow: joint (MMDiT) blocks, then single-stream DiT blocks over text + image."""
    torch.manual_seed(seed)
    model = diffusers.AuraFlowTransformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_mmdit_layers=1,
        num_single_dit_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        caption_projection_dim=16,
        out_channels=4,
        pos_embed_max_size=64,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, 16, generator=_generator(seed + 1))

    def call(m, x, t):
        return m(hidden_states=x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]

    return Case("auraflow", model, call, batch, 8, 8)


def sana_case(batch=2, seed=0) -> Case:
    """Sana: linear attention (a matmul over the token axis, no SDPA) and cross-attention."""
    torch.manual_seed(seed)
    model = diffusers.SanaTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=CAPTION_CHANNELS,
        sample_size=8,
        patch_size=1,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, CAPTION_CHANNELS, generator=_generator(seed + 1))

    def call(m, x, t):
        return m(hidden_states=x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]

    return Case("sana", model, call, batch, 8, 8)


def qwenimage_case(batch=1, grid=(4, 4), seed=0) -> Case:
    """QwenImage: packed 2x2 patches, joint attention over text and image streams."""
    torch.manual_seed(seed)
    model = diffusers.QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        axes_dims_rope=(4, 6, 6),
    ).eval()
    text = _randn(batch, TEXT_TOKENS, 16, generator=_generator(seed + 1))
    mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.long)
    h, w = grid

    def call(m, x, t):
        out = m(
            hidden_states=_packed(x, 2),
            encoder_hidden_states=text,
            encoder_hidden_states_mask=mask,
            timestep=t / 1000,
            img_shapes=[(1, h, w)] * batch,
            return_dict=False,
        )[0]
        return _unpacked(out, x.shape, 2)

    return Case("qwenimage", model, call, batch, 2 * h, 2 * w)


def cogview4_case(batch=2, seed=0) -> Case:
    torch.manual_seed(seed)
    model = diffusers.CogView4Transformer2DModel(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        text_embed_dim=16,
        time_embed_dim=16,
        condition_dim=4,
        pos_embed_max_size=16,
        sample_size=8,
        rope_axes_dim=(4, 4),
    ).eval()
    text = _randn(batch, TEXT_TOKENS, 16, generator=_generator(seed + 1))
    size = torch.tensor([[8.0, 8.0]] * batch)
    crop = torch.zeros(batch, 2)

    def call(m, x, t):
        return m(x, text, t, original_size=size, target_size=size, crop_coords=crop, return_dict=False)[0]

    return Case("cogview4", model, call, batch, 8, 8)


def hunyuandit_case(batch=2, seed=0) -> Case:
    """HunyuanDiT: cross-attention over two text encoders, long skips, 2-D RoPE built as its pipeline does."""
    from diffusers.models.embeddings import get_2d_rotary_pos_embed

    torch.manual_seed(seed)
    model = diffusers.HunyuanDiT2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        patch_size=2,
        sample_size=8,
        hidden_size=16,
        num_layers=4,  # the long skips need an even count: blocks 0 and 3 are joined
        cross_attention_dim=16,
        cross_attention_dim_t5=16,
        pooled_projection_dim=16,
        text_len=TEXT_TOKENS,
        text_len_t5=TEXT_TOKENS,
        use_style_cond_and_image_meta_size=False,
    ).eval()
    generator = _generator(seed + 1)
    text, text_t5 = (_randn(batch, TEXT_TOKENS, 16, generator=generator) for _ in range(2))
    mask = torch.ones(batch, TEXT_TOKENS)
    rope = get_2d_rotary_pos_embed(8, ((0, 0), (4, 4)), (4, 4))

    def call(m, x, t):
        out = m(
            x,
            t.float(),
            encoder_hidden_states=text,
            text_embedding_mask=mask,
            encoder_hidden_states_t5=text_t5,
            text_embedding_mask_t5=mask,
            image_rotary_emb=rope,
            return_dict=False,
        )[0]
        return out[:, : x.shape[1]]

    return Case("hunyuandit", model, call, batch, 8, 8)


def lumina2_case(batch=2, seed=0) -> Case:
    """Lumina2: context and noise refiners, joint blocks over text + image; breaks the graph."""
    torch.manual_seed(seed)
    model = diffusers.Lumina2Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        hidden_size=16,
        num_layers=2,
        num_refiner_layers=1,
        num_attention_heads=2,
        num_kv_heads=2,
        multiple_of=16,
        axes_dim_rope=(4, 2, 2),
        axes_lens=(32, 32, 32),
        cap_feat_dim=16,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, 16, generator=_generator(seed + 1))
    mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.bool)

    def call(m, x, t):
        return m(x, t / 1000, text, mask, return_dict=False)[0]

    return Case("lumina2", model, call, batch, 8, 8)


def stableaudio_case(batch=2, length=16, seed=0) -> Case:
    """StableAudio: 1-D audio latents, a global token prepended, RoPE over part of each head."""
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    torch.manual_seed(seed)
    model = diffusers.StableAudioDiTModel(
        sample_size=length,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        num_key_value_attention_heads=1,
        out_channels=4,
        cross_attention_dim=16,
        time_proj_dim=16,
        global_states_input_dim=16,
        cross_attention_input_dim=16,
    ).eval()
    generator = _generator(seed + 1)
    text, global_states = _randn(batch, TEXT_TOKENS, 16, generator=generator), _randn(batch, 1, 16, generator=generator)
    rope = get_1d_rotary_pos_embed(4, length + 1, use_real=True, repeat_interleave_real=False)

    def call(m, x, t):
        return m(
            x,
            t,
            encoder_hidden_states=text,
            global_hidden_states=global_states,
            rotary_embedding=rope,
            return_dict=False,
        )[0]

    return Case("stableaudio", model, call, batch, 1, length, shape=(batch, 4, length))


# -- video models ---------------------------------------------------------------------------------
def _video(name, model, call, batch, frames, height, width, channels=4) -> Case:
    return Case(name, model, call, batch, height, width, shape=(batch, channels, frames, height, width))


def latte_case(batch=2, frames=2, seed=0) -> Case:
    """Latte: spatial blocks over (B*F, S) and temporal blocks over (B*S, F), reshaped in between."""
    torch.manual_seed(seed)
    model = diffusers.LatteTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=1,
        cross_attention_dim=16,
        sample_size=8,
        patch_size=2,
        norm_type="ada_norm_single",
        caption_channels=CAPTION_CHANNELS,
        video_length=frames,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, CAPTION_CHANNELS, generator=_generator(seed + 1))

    def call(m, x, t):
        return m(x, timestep=t, encoder_hidden_states=text, return_dict=False)[0][:, :4]

    return _video("latte", model, call, batch, frames, 8, 8)


def allegro_case(batch=2, frames=2, seed=0) -> Case:
    torch.manual_seed(seed)
    model = diffusers.AllegroTransformer3DModel(
        patch_size=2,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        cross_attention_dim=16,
        sample_height=8,
        sample_width=8,
        sample_frames=frames,
        caption_channels=CAPTION_CHANNELS,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, CAPTION_CHANNELS, generator=_generator(seed + 1))

    def call(m, x, t):
        return m(x, text, t, return_dict=False)[0]

    return _video("allegro", model, call, batch, frames, 8, 8)


def cogvideox_case(batch=2, frames=2, seed=0) -> Case:
    """CogVideoX: text and video tokens in one expert-adaLN stream per block (text length fixed)."""
    torch.manual_seed(seed)
    model = diffusers.CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=8,
        text_embed_dim=16,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=frames,
        patch_size=2,
        temporal_compression_ratio=1,
        max_text_seq_length=TEXT_TOKENS,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, 16, generator=_generator(seed + 1))

    def call(m, x, t):
        out = m(x.transpose(1, 2), text, t, return_dict=False)[0]  # CogVideoX takes (B, F, C, H, W)
        return out.transpose(1, 2)

    return _video("cogvideox", model, call, batch, frames, 8, 8)


def hunyuanvideo_case(batch=1, frames=2, seed=0) -> Case:
    """HunyuanVideo: token refiner, double-stream (joint) and single-stream blocks, 3-D RoPE."""
    torch.manual_seed(seed)
    model = diffusers.HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=2,
        patch_size_t=1,
        text_embed_dim=16,
        pooled_projection_dim=16,
        rope_axes_dim=(2, 2, 4),
    ).eval()
    generator = _generator(seed + 1)
    text, pooled = _randn(batch, TEXT_TOKENS, 16, generator=generator), _randn(batch, 16, generator=generator)
    mask = torch.ones(batch, TEXT_TOKENS)
    guidance = torch.full((batch,), 3.5)

    def call(m, x, t):
        return m(x, t, text, mask, pooled, guidance=guidance, return_dict=False)[0]

    return _video("hunyuanvideo", model, call, batch, frames, 8, 8)


def wan_case(batch=2, frames=2, seed=0) -> Case:
    torch.manual_seed(seed)
    model = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=32,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, 16, generator=_generator(seed + 1))

    def call(m, x, t):
        return m(x, t, text, return_dict=False)[0]

    return _video("wan", model, call, batch, frames, 8, 8)


def ltxvideo_case(batch=2, frames=2, grid=(4, 4), seed=0) -> Case:
    """LTX-Video: packed video tokens (patch 1), 3-D RoPE from the frame/height/width it is given."""
    torch.manual_seed(seed)
    model = diffusers.LTXVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=2,
        caption_channels=CAPTION_CHANNELS,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, CAPTION_CHANNELS, generator=_generator(seed + 1))
    mask = torch.ones(batch, TEXT_TOKENS)
    h, w = grid

    def call(m, x, t):
        b, c = x.shape[:2]
        tokens = x.flatten(2).transpose(1, 2)  # (B, F*H*W, C)
        out = m(tokens, text, t, mask, num_frames=frames, height=h, width=w, return_dict=False)[0]
        return out.transpose(1, 2).reshape(x.shape)

    return _video("ltxvideo", model, call, batch, frames, h, w)


def mochi_case(batch=2, frames=2, seed=0) -> Case:
    """Mochi: asymmetric joint attention (a narrow text stream), 3-D RoPE."""
    torch.manual_seed(seed)
    model = diffusers.MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=4,
        out_channels=4,
        text_embed_dim=16,
        time_embed_dim=8,
        max_sequence_length=TEXT_TOKENS,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, 16, generator=_generator(seed + 1))
    mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.bool)

    def call(m, x, t):
        return m(x, text, t, mask, return_dict=False)[0]

    return _video("mochi", model, call, batch, frames, 8, 8)


def chroma_case(batch=1, grid=(4, 4), seed=0) -> Case:
    """Chroma: FLUX-shaped double- and single-stream blocks, modulation from a distilled approximator."""
    torch.manual_seed(seed)
    model = diffusers.ChromaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=(4, 4, 8),
        approximator_num_channels=8,
        approximator_hidden_dim=32,
        approximator_layers=1,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, 32, generator=_generator(seed + 1))
    img_ids, txt_ids = _image_ids(*grid), torch.zeros(TEXT_TOKENS, 3)

    def call(m, x, t):
        out = m(
            hidden_states=_packed(x, 1),
            encoder_hidden_states=text,
            timestep=t / 1000,
            img_ids=img_ids,
            txt_ids=txt_ids,
            return_dict=False,
        )[0]
        return _unpacked(out, x.shape, 1)

    return Case("chroma", model, call, batch, *grid)


def cogview3plus_case(batch=2, seed=0) -> Case:
    torch.manual_seed(seed)
    model = diffusers.CogView3PlusTransformer2DModel(
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        out_channels=4,
        text_embed_dim=16,
        time_embed_dim=16,
        condition_dim=4,
        pos_embed_max_size=16,
        sample_size=8,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, 16, generator=_generator(seed + 1))
    size = torch.tensor([[8.0, 8.0]] * batch)
    crop = torch.zeros(batch, 2)

    def call(m, x, t):
        return m(x, text, t, original_size=size, target_size=size, crop_coords=crop, return_dict=False)[0]

    return Case("cogview3plus", model, call, batch, 8, 8)


def skyreelsv2_case(batch=2, frames=2, seed=0) -> Case:
    torch.manual_seed(seed)
    model = diffusers.SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=32,
    ).eval()
    text = _randn(batch, TEXT_TOKENS, 16, generator=_generator(seed + 1))

    def call(m, x, t):
        return m(x, t, text, return_dict=False)[0]

    return _video("skyreelsv2", model, call, batch, frames, 8, 8)
