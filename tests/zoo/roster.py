"""The diffusers roster: one tiny, randomly initialised model for every transformer class diffusers ships.

Each builder transcribes the tiny config and dummy inputs of the class's own test in diffusers
(``tests/models/transformers/test_models_*.py``, or the pipeline test where there is no model test; Flux3 and RFD4,
which have neither, get a config of the same scale) into a :class:`~zoo.case.Case`, with the batch capped at 2 and
long text sequences cut to 16 tokens. Latents are always channels-first, ``(B, C, H, W)`` for images,
``(B, C, F, H, W)`` for video and ``(B, C, L)`` for sequences (audio, embeddings, residues); ``call`` packs them into
whatever layout the model takes (tokens, channels-last, lists), converts the timestep (``t`` counts 999 down to 0) to
the model's convention, and unpacks a prediction of the latents' shape. Conditioning (text embeddings, masks,
position ids, RoPE tables, KV caches) is built once per builder from a seeded generator and closed over by ``call``.

``ROSTER`` lists every class, with the reason when one cannot run here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import diffusers
import torch

from .case import Case

# -- shared helpers ----------------------------------------------------------------------------------------------------


def _model(cls, seed: int, **config) -> torch.nn.Module:
    torch.manual_seed(seed)
    return cls(**config).eval()


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + 1)


def _randn(rng: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=rng)


def _contiguous(call: Callable) -> Callable:
    """A strided prediction would carry its layout into the next step's latents and make a compiled model recompile."""
    return lambda m, x, t: call(m, x, t).contiguous()


def _image(name, model, call, batch, channels, height, width) -> Case:
    return Case(name, model, _contiguous(call), batch, height, width, shape=(batch, channels, height, width))


def _video(name, model, call, batch, channels, frames, height, width) -> Case:
    shape = (batch, channels, frames, height, width)
    return Case(name, model, _contiguous(call), batch, height, width, shape=shape)


def _sequence(name, model, call, batch, channels, length) -> Case:
    return Case(name, model, _contiguous(call), batch, 1, length, shape=(batch, channels, length))


def _flow(t: torch.Tensor) -> torch.Tensor:
    """Flow-matching time in [0, 1], 1 at pure noise."""
    return t / 1000


def _flow_inverted(t: torch.Tensor) -> torch.Tensor:
    """Flow-matching time in [0, 1] counted the other way: 0 at pure noise, 1 at the data."""
    return 1 - t / 1000


def _pack(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) latents as (B, H/p * W/p, C*p*p) tokens."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


def _unpack(tokens: torch.Tensor, shape: torch.Size, patch: int) -> torch.Tensor:
    b, c, h, w = shape
    x = tokens.reshape(b, h // patch, w // patch, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(shape)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, *grid) latents as (B, prod(grid), C) tokens of one pixel each."""
    return x.flatten(2).transpose(1, 2)


def _untokens(tokens: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(shape)


def _grid_ids(*sizes: int, axes: int | None = None) -> torch.Tensor:
    """(prod(sizes), axes) integer grid coordinates, zero-padded in front (FLUX puts a zero time axis first)."""
    grid = torch.cartesian_prod(*(torch.arange(s) for s in sizes)).reshape(-1, len(sizes))
    pad = (axes or len(sizes)) - len(sizes)
    return torch.cat([torch.zeros(grid.shape[0], pad, dtype=grid.dtype), grid], dim=1).float()


# -- images: (B, C, H, W) ----------------------------------------------------------------------------------------------


def dit(seed=0) -> Case:
    model = _model(
        diffusers.DiTTransformer2DModel,
        seed,
        in_channels=4,
        out_channels=8,
        activation_fn="gelu-approximate",
        num_attention_heads=2,
        attention_head_dim=4,
        attention_bias=True,
        num_layers=1,
        norm_type="ada_norm_zero",
        num_embeds_ada_norm=8,
        patch_size=2,
        sample_size=8,
    )
    labels = torch.randint(0, 4, (2,), generator=_rng(seed))

    def call(m, x, t):
        return m(x, timestep=t, class_labels=labels).sample[:, :4]  # learned sigma: 8 channels

    return _image("dit", model, call, 2, 4, 8, 8)


def pixart(seed=0) -> Case:
    model = _model(
        diffusers.PixArtTransformer2DModel,
        seed,
        sample_size=8,
        num_layers=1,
        patch_size=2,
        attention_head_dim=2,
        num_attention_heads=2,
        in_channels=4,
        cross_attention_dim=8,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=8,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        use_additional_conditions=False,
        caption_channels=None,
    )
    text = _randn(_rng(seed), 2, 8, 8)
    added = {"aspect_ratio": None, "resolution": None}

    def call(m, x, t):
        return m(x, encoder_hidden_states=text, timestep=t, added_cond_kwargs=added).sample[:, :4]

    return _image("pixart", model, call, 2, 4, 8, 8)


def prior(seed=0) -> Case:
    """unCLIP prior: denoises a CLIP image embedding (B, 8), here laid out as a length-1 sequence."""
    model = _model(
        diffusers.PriorTransformer,
        seed,
        num_attention_heads=2,
        attention_head_dim=4,
        num_layers=2,
        embedding_dim=8,
        num_embeddings=7,
        additional_embeddings=4,
    )
    rng = _rng(seed)
    proj, text = _randn(rng, 2, 8), _randn(rng, 2, 7, 8)

    def call(m, x, t):
        out = m(x[..., 0], t, proj_embedding=proj, encoder_hidden_states=text).predicted_image_embedding
        return out[..., None]

    return _sequence("prior", model, call, 2, 8, 1)


def auraflow(seed=0) -> Case:
    model = _model(
        diffusers.AuraFlowTransformer2DModel,
        seed,
        sample_size=32,
        patch_size=2,
        in_channels=4,
        num_mmdit_layers=1,
        num_single_dit_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        out_channels=4,
        pos_embed_max_size=256,
    )
    text = _randn(_rng(seed), 2, 16, 32)  # the test uses 256 text tokens

    def call(m, x, t):
        return m(x, encoder_hidden_states=text, timestep=_flow(t)).sample

    return _image("auraflow", model, call, 2, 4, 32, 32)


def _sd3(seed, name, dual_attention_layers, qk_norm) -> Case:
    model = _model(
        diffusers.SD3Transformer2DModel,
        seed,
        sample_size=32,
        patch_size=1,
        in_channels=4,
        num_layers=4,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
        pos_embed_max_size=96,
        dual_attention_layers=dual_attention_layers,
        qk_norm=qk_norm,
    )
    rng = _rng(seed)
    text, pooled = _randn(rng, 2, 16, 32), _randn(rng, 2, 64)  # the test uses 154 text tokens

    def call(m, x, t):
        return m(x, encoder_hidden_states=text, pooled_projections=pooled, timestep=t).sample

    return _image(name, model, call, 2, 4, 32, 32)


def sd3(seed=0) -> Case:
    return _sd3(seed, "sd3", (), None)


def sd35(seed=0) -> Case:
    """SD3.5: an extra self-attention in block 0 (MMDiT-X) and RMS QK norm."""
    return _sd3(seed, "sd35", (0,), "rms_norm")


def sana(seed=0) -> Case:
    model = _model(
        diffusers.SanaTransformer2DModel,
        seed,
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        attention_head_dim=4,
        num_attention_heads=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=8,
        sample_size=32,
    )
    text = _randn(_rng(seed), 2, 8, 8)

    def call(m, x, t):
        return m(x, encoder_hidden_states=text, timestep=t).sample

    return _image("sana", model, call, 2, 4, 32, 32)


def _size_conditions(batch: int, height: int, width: int) -> dict[str, torch.Tensor]:
    size = torch.tensor([[height * 8, width * 8]] * batch)
    return {"original_size": size, "target_size": size, "crop_coords": torch.zeros(batch, 2, dtype=torch.long)}


def cogview3plus(seed=0) -> Case:
    model = _model(
        diffusers.CogView3PlusTransformer2DModel,
        seed,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=4,
        num_attention_heads=2,
        out_channels=4,
        text_embed_dim=8,
        time_embed_dim=8,
        condition_dim=2,
        pos_embed_max_size=8,
        sample_size=8,
    )
    text, sizes = _randn(_rng(seed), 2, 8, 8), _size_conditions(2, 8, 8)

    def call(m, x, t):
        return m(x, encoder_hidden_states=text, timestep=t, **sizes).sample

    return _image("cogview3plus", model, call, 2, 4, 8, 8)


def cogview4(seed=0) -> Case:
    model = _model(
        diffusers.CogView4Transformer2DModel,
        seed,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=4,
        num_attention_heads=4,
        out_channels=4,
        text_embed_dim=8,
        time_embed_dim=8,
        condition_dim=4,
    )
    text, sizes = _randn(_rng(seed), 2, 8, 8), _size_conditions(2, 8, 8)

    def call(m, x, t):
        return m(x, encoder_hidden_states=text, timestep=t, **sizes).sample

    return _image("cogview4", model, call, 2, 4, 8, 8)


def hunyuandit(seed=0) -> Case:
    """HunyuanDiT: two text encoders, size/style conditioning, 2-D RoPE built as its pipeline does."""
    from diffusers.models.embeddings import get_2d_rotary_pos_embed

    model = _model(
        diffusers.HunyuanDiT2DModel,
        seed,
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        cross_attention_dim=8,
        cross_attention_dim_t5=8,
        pooled_projection_dim=4,
        hidden_size=16,
        text_len=4,
        text_len_t5=4,
        activation_fn="gelu-approximate",
    )
    rng = _rng(seed)
    text, text_t5, mask = _randn(rng, 2, 4, 8), _randn(rng, 2, 4, 8), torch.ones(2, 4)
    meta = torch.tensor([[1024.0, 1024.0, 16.0, 16.0, 0.0, 0.0]] * 2)
    style = torch.zeros(2, dtype=torch.long)
    rope = get_2d_rotary_pos_embed(8, ((0, 0), (4, 4)), (4, 4))

    def call(m, x, t):
        out = m(
            x,
            t.float(),
            encoder_hidden_states=text,
            text_embedding_mask=mask,
            encoder_hidden_states_t5=text_t5,
            text_embedding_mask_t5=mask,
            image_meta_size=meta,
            style=style,
            image_rotary_emb=rope,
        ).sample
        return out[:, :4]  # learned sigma: 8 channels

    return _image("hunyuandit", model, call, 2, 4, 8, 8)


def lumina_next(seed=0) -> Case:
    from diffusers.models.embeddings import get_2d_rotary_pos_embed_lumina

    model = _model(
        diffusers.LuminaNextDiT2DModel,
        seed,
        sample_size=16,
        patch_size=2,
        in_channels=4,
        hidden_size=24,
        num_layers=2,
        num_attention_heads=3,
        num_kv_heads=1,
        multiple_of=16,
        ffn_dim_multiplier=None,
        norm_eps=1e-5,
        learn_sigma=False,
        qk_norm=True,
        cross_attention_dim=32,
        scaling_factor=1.0,
    )
    text, mask = _randn(_rng(seed), 2, 16, 32), torch.ones(2, 16)
    rope = get_2d_rotary_pos_embed_lumina(8, 8, 8)  # head_dim 8, an 8x8 patch grid

    def call(m, x, t):
        return m(x, _flow_inverted(t), text, mask, image_rotary_emb=rope, cross_attention_kwargs={}).sample

    return _image("lumina_next", model, call, 2, 4, 16, 16)


def lumina2(seed=0) -> Case:
    model = _model(
        diffusers.Lumina2Transformer2DModel,
        seed,
        sample_size=16,
        patch_size=2,
        in_channels=4,
        hidden_size=24,
        num_layers=2,
        num_refiner_layers=1,
        num_attention_heads=3,
        num_kv_heads=1,
        multiple_of=2,
        ffn_dim_multiplier=None,
        norm_eps=1e-5,
        scaling_factor=1.0,
        axes_dim_rope=(4, 2, 2),
        axes_lens=(128, 128, 128),
        cap_feat_dim=32,
    )
    text, mask = _randn(_rng(seed), 2, 16, 32), torch.ones(2, 16, dtype=torch.bool)

    def call(m, x, t):
        return m(x, _flow_inverted(t), text, mask).sample

    return _image("lumina2", model, call, 2, 4, 16, 16)


def hidream(seed=0) -> Case:
    """HiDream-I1: dual- then single-stream blocks with MoE feed-forwards, Llama hidden states of two layers."""
    model = _model(
        diffusers.HiDreamImageTransformer2DModel,
        seed,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_channels=[8, 4],
        text_emb_dim=8,
        num_routed_experts=2,
        num_activated_experts=2,
        axes_dims_rope=(4, 2, 2),
        max_resolution=(32, 32),
        llama_layers=(0, 1),
        force_inference_output=True,
    )
    rng = _rng(seed)
    t5, llama, pooled = _randn(rng, 2, 8, 8), _randn(rng, 2, 2, 8, 4), _randn(rng, 2, 8)  # llama: (layers, B, L, D)

    def call(m, x, t):
        return m(
            x, timesteps=t, encoder_hidden_states_t5=t5, encoder_hidden_states_llama3=llama, pooled_embeds=pooled
        ).sample

    return _image("hidream", model, call, 2, 4, 32, 32)


def omnigen(seed=0) -> Case:
    """OmniGen: a Phi-3 decoder over text ids, one input image's latents, a time token and the noisy latents."""
    model = _model(
        diffusers.OmniGenTransformer2DModel,
        seed,
        hidden_size=16,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=32,
        num_layers=20,
        pad_token_id=0,
        vocab_size=1000,
        in_channels=4,
        time_step_dim=4,
        rope_scaling={"long_factor": [1, 2], "short_factor": [1, 2]},
    )
    rng = _rng(seed)
    batch, text_len, image_tokens = 2, 24, 16
    ids = torch.randint(0, 10, (batch, text_len), generator=rng)
    input_latents = [_randn(rng, 1, 4, 8, 8)]
    length = text_len + 1 + image_tokens
    mask = torch.ones(batch, length, length)
    positions = torch.arange(length).expand(batch, length)

    def call(m, x, t):
        return m(
            x,
            _flow_inverted(t),
            input_ids=ids,
            input_img_latents=input_latents,
            input_image_sizes={0: [[0, image_tokens]]},
            attention_mask=mask,
            position_ids=positions,
        ).sample

    return _image("omnigen", model, call, batch, 4, 8, 8)


def glm_image(seed=0) -> Case:
    """GLM-Image: CogView4-like DiT conditioned on a prior (AR) token id per sample."""
    model = _model(
        diffusers.GlmImageTransformer2DModel,
        seed,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        text_embed_dim=32,
        time_embed_dim=16,
        condition_dim=8,
        prior_vq_quantizer_codebook_size=64,
    )
    rng = _rng(seed)
    text, prior_token = _randn(rng, 1, 12, 32), torch.randint(0, 64, (1,), generator=rng)
    sizes = {"target_size": torch.tensor([[8.0, 8.0]]), "crop_coords": torch.zeros(1, 2)}
    keep_prior = torch.zeros(1, dtype=torch.bool)

    def call(m, x, t):
        return m(
            x,
            encoder_hidden_states=text,
            prior_token_id=prior_token,
            prior_token_drop=keep_prior,
            timestep=t,
            **sizes,
        ).sample

    return _image("glm_image", model, call, 1, 4, 8, 8)


def ernie_image(seed=0) -> Case:
    model = _model(
        diffusers.ErnieImageTransformer2DModel,
        seed,
        hidden_size=16,
        num_attention_heads=1,
        num_layers=1,
        ffn_hidden_size=16,
        in_channels=16,
        out_channels=16,
        patch_size=1,
        text_in_dim=16,
        rope_theta=256,
        rope_axes_dim=(8, 4, 4),
        eps=1e-6,
        qk_layernorm=True,
    )
    text = _randn(_rng(seed), 1, 16, 16)
    lengths = torch.tensor([16])

    def call(m, x, t):
        return m(x, t.float(), text_bth=text, text_lens=lengths).sample

    return _image("ernie_image", model, call, 1, 16, 16, 16)


def prx(seed=0) -> Case:
    """PRX: the test's 1792-wide, 28-head config shrunk to 64 wide, 2 heads (same head/RoPE split)."""
    model = _model(
        diffusers.PRXTransformer2DModel,
        seed,
        in_channels=16,
        patch_size=2,
        context_in_dim=32,
        hidden_size=64,
        mlp_ratio=3.5,
        num_heads=2,
        depth=2,
        axes_dim=[16, 16],
        theta=10_000,
    )
    text = _randn(_rng(seed), 1, 16, 32)

    def call(m, x, t):
        return m(x, _flow(t), encoder_hidden_states=text).sample

    return _image("prx", model, call, 1, 16, 16, 16)


def bria_fibo2(seed=0) -> Case:
    """Bria FIBO 2: a Perceiver compresses the text into gist tokens, injected again in later blocks."""
    model = _model(
        diffusers.BriaFibo2Transformer2DModel,
        seed,
        in_channels=4,
        patch_size=2,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        cap_feat_dim=24,
        injection_layer_ids=(1,),
        perceiver_num_layers=1,
        min_num_gist_tokens=4,
        max_num_gist_tokens=8,
        gist_step=4,
        gist_min_text_len=4,
        gist_max_text_len=16,
        axes_dims=(4, 6, 6),
        axes_lens=(16, 16, 16),
    )
    text = _randn(_rng(seed), 1, 2, 6, 24)  # one text bundle for the Perceiver plus one per injection block

    def call(m, x, t):
        return m(x, _flow(t), text).sample

    return _image("bria_fibo2", model, call, 1, 4, 8, 8)


def z_image(seed=0) -> Case:
    """Z-Image: single-stream DiT over per-sample lists of (C, F, H, W) latents and caption features."""
    model = _model(
        diffusers.ZImageTransformer2DModel,
        seed,
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=16,
        n_layers=1,
        n_refiner_layers=1,
        n_heads=1,
        n_kv_heads=2,
        qk_norm=True,
        cap_feat_dim=16,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32],
    )
    caption = _randn(_rng(seed), 16, 16)

    def call(m, x, t):
        out = m([x[0, :, None]], _flow_inverted(t), [caption]).sample
        return torch.stack(out)[:, :, 0]

    return _image("z_image", model, call, 1, 16, 16, 16)


def hunyuan_image(seed=0) -> Case:
    """HunyuanImage 2.1 (pipeline test config): HunyuanVideo-style double/single blocks, two text encoders."""
    model = _model(
        diffusers.HunyuanImageTransformer2DModel,
        seed,
        in_channels=4,
        out_channels=4,
        num_attention_heads=4,
        attention_head_dim=8,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=(1, 1),
        text_embed_dim=32,
        text_embed_2_dim=32,
        rope_axes_dim=(4, 4),
    )
    rng = _rng(seed)
    text, text_2 = _randn(rng, 1, 8, 32), _randn(rng, 1, 4, 32)
    mask, mask_2 = torch.ones(1, 8), torch.ones(1, 4)

    def call(m, x, t):
        return m(
            x,
            t.float(),
            encoder_hidden_states=text,
            encoder_attention_mask=mask,
            encoder_hidden_states_2=text_2,
            encoder_attention_mask_2=mask_2,
        ).sample

    return _image("hunyuan_image", model, call, 1, 4, 8, 8)


# -- images as packed tokens: (B, C, H, W) latents, (B, H/p * W/p, C*p*p) tokens ---------------------------------------


def _flux_like(cls, seed, name, *, pooled: bool, guidance: float | None, **config) -> Case:
    """FLUX-shaped models: 1x1-patch tokens of a 4x4 latent grid, 48 text tokens, (t, h, w) ids, t in [0, 1]."""
    model = _model(cls, seed, **config)
    rng = _rng(seed)
    text = _randn(rng, 1, 48, config["joint_attention_dim"])
    extra = {"pooled_projections": _randn(rng, 1, config["pooled_projection_dim"])} if pooled else {}
    if guidance is not None:
        extra["guidance"] = torch.full((1,), guidance)
    img_ids, txt_ids = _grid_ids(4, 4, axes=3), torch.zeros(48, 3)

    def call(m, x, t):
        out = m(_pack(x, 1), encoder_hidden_states=text, timestep=_flow(t), img_ids=img_ids, txt_ids=txt_ids, **extra)
        return _unpack(out.sample, x.shape, 1)

    return _image(name, model, call, 1, 4, 4, 4)


_FLUX_CONFIG = dict(
    patch_size=1,
    in_channels=4,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,
    axes_dims_rope=[4, 4, 8],
)


def flux(seed=0) -> Case:
    return _flux_like(
        diffusers.FluxTransformer2DModel,
        seed,
        "flux",
        pooled=True,
        guidance=None,
        pooled_projection_dim=32,
        **_FLUX_CONFIG,
    )


def chroma(seed=0) -> Case:
    """Chroma: FLUX blocks whose modulation comes from a small distilled approximator, no pooled text."""
    return _flux_like(
        diffusers.ChromaTransformer2DModel,
        seed,
        "chroma",
        pooled=False,
        guidance=None,
        approximator_num_channels=8,
        approximator_hidden_dim=16,
        approximator_layers=1,
        **_FLUX_CONFIG,
    )


def longcat_image(seed=0) -> Case:
    return _flux_like(
        diffusers.LongCatImageTransformer2DModel,
        seed,
        "longcat_image",
        pooled=False,
        guidance=3.5,
        pooled_projection_dim=32,
        **_FLUX_CONFIG,
    )


def ovis_image(seed=0) -> Case:
    return _flux_like(
        diffusers.OvisImageTransformer2DModel,
        seed,
        "ovis_image",
        pooled=False,
        guidance=None,
        out_channels=4,
        **_FLUX_CONFIG,
    )


def bria(seed=0) -> Case:
    """Bria 3.2: FLUX blocks without pooled text, RoPE on (h, w) only; timesteps in [0, 1000]."""
    model = _model(
        diffusers.BriaTransformer2DModel,
        seed,
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=None,
        axes_dims_rope=[0, 4, 4],
    )
    text = _randn(_rng(seed), 1, 48, 32)
    img_ids, txt_ids = _grid_ids(4, 4, axes=3), torch.zeros(48, 3)

    def call(m, x, t):
        out = m(_pack(x, 1), encoder_hidden_states=text, timestep=t.float(), img_ids=img_ids, txt_ids=txt_ids)
        return _unpack(out.sample, x.shape, 1)

    return _image("bria", model, call, 1, 4, 4, 4)


def bria_fibo(seed=0) -> Case:
    """Bria FIBO: FLUX blocks fed, per block, with hidden states of several text-encoder layers."""
    model = _model(
        diffusers.BriaFiboTransformer2DModel,
        seed,
        patch_size=1,
        in_channels=48,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=64,
        text_encoder_dim=32,
        pooled_projection_dim=None,
        axes_dims_rope=[0, 4, 4],
    )
    text = _randn(_rng(seed), 1, 32, 64)
    layers = [text[:, :, :32], text[:, :, :32]]
    img_ids, txt_ids = _grid_ids(16, 16, axes=3), torch.zeros(32, 3)

    def call(m, x, t):
        out = m(
            _pack(x, 1),
            encoder_hidden_states=text,
            text_encoder_layers=layers,
            timestep=t.float(),
            img_ids=img_ids,
            txt_ids=txt_ids,
        )
        return _unpack(out.sample, x.shape, 1)

    return _image("bria_fibo", model, call, 1, 48, 16, 16)


def _flux2_ids(height: int, width: int, text_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """FLUX.2 ids are (t, h, w, l): image tokens on an (h, w) grid, text tokens along l."""
    return _grid_ids(height, width, 1, axes=4)[None], _grid_ids(text_len, axes=4)[None]


_FLUX2_CONFIG = dict(
    patch_size=1,
    in_channels=4,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,
    timestep_guidance_channels=256,
    axes_dims_rope=[4, 4, 4, 4],
)


def flux2(seed=0) -> Case:
    model = _model(diffusers.Flux2Transformer2DModel, seed, **_FLUX2_CONFIG)
    text = _randn(_rng(seed), 1, 48, 32)
    img_ids, txt_ids = _flux2_ids(4, 4, 48)
    guidance = torch.ones(1)

    def call(m, x, t):
        out = m(
            _pack(x, 1),
            encoder_hidden_states=text,
            timestep=_flow(t),
            img_ids=img_ids,
            txt_ids=txt_ids,
            guidance=guidance,
        )
        return _unpack(out.sample, x.shape, 1)

    return _image("flux2", model, call, 1, 4, 4, 4)


def flux2_kv(seed=0) -> Case:
    """FLUX.2 Klein KV: a pass over 4 reference + image tokens caches the reference K/V; the steps attend to it."""
    from diffusers.models.transformers.transformer_flux2 import (
        Flux2KVAttnProcessor,
        Flux2KVParallelSelfAttnProcessor,
    )

    model = _model(diffusers.Flux2Transformer2DModel, seed, **_FLUX2_CONFIG)
    for block in model.transformer_blocks:  # the KV processors, as the Klein KV pipeline installs them
        block.attn.set_processor(Flux2KVAttnProcessor())
    for block in model.single_transformer_blocks:
        block.attn.set_processor(Flux2KVParallelSelfAttnProcessor())
    rng = _rng(seed)
    text, reference = _randn(rng, 1, 48, 32), _randn(rng, 1, 4, 4)
    img_ids, txt_ids = _flux2_ids(4, 4, 48)
    ref_ids = _grid_ids(4, 1, 1, axes=4)[None]
    guidance = torch.ones(1)
    with torch.no_grad():
        cache = model(
            torch.cat([reference, _randn(rng, 1, 16, 4)], dim=1),
            encoder_hidden_states=text,
            timestep=torch.ones(1),
            img_ids=torch.cat([ref_ids, img_ids], dim=1),
            txt_ids=txt_ids,
            guidance=guidance,
            kv_cache_mode="extract",
            num_ref_tokens=4,
            ref_fixed_timestep=0.0,
        ).kv_cache

    def call(m, x, t):
        out = m(
            _pack(x, 1),
            encoder_hidden_states=text,
            timestep=_flow(t),
            img_ids=img_ids,
            txt_ids=txt_ids,
            guidance=guidance,
            kv_cache=cache,
            kv_cache_mode="cached",
        )
        return _unpack(out.sample, x.shape, 1)

    return _image("flux2_kv", model, call, 1, 4, 4, 4)


def flux3(seed=0) -> Case:
    """FLUX.3 (no test in diffusers; a FLUX.2-sized config): per-mode blocks, then joint single blocks."""
    model = _model(
        diffusers.Flux3Transformer2DModel,
        seed,
        in_channels=16,
        cond_in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=(4, 4, 4, 4),
    )
    text = _randn(_rng(seed), 1, 12, 32)
    img_ids, txt_ids = (ids[0] for ids in _flux2_ids(4, 4, 12))

    def call(m, x, t):
        out = m(_pack(x, 2), text, _flow(t), img_ids=img_ids, txt_ids=txt_ids)
        return _unpack(out.sample, x.shape, 2)

    return _image("flux3", model, call, 1, 4, 8, 8)


def _qwen_like(cls, seed, name, **config) -> Case:
    """Qwen-Image-shaped models: 2x2 patches of 4 channels on a 4x4 grid, 8 text tokens with a mask."""
    model = _model(
        cls,
        seed,
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=16,
        axes_dims_rope=(8, 4, 4),
        **config,
    )
    text, mask = _randn(_rng(seed), 1, 8, 16), torch.ones(1, 8, dtype=torch.long)

    def call(m, x, t):
        out = m(
            _pack(x, 2),
            encoder_hidden_states=text,
            encoder_hidden_states_mask=mask,
            timestep=_flow(t),
            img_shapes=[(1, 4, 4)],
        )
        return _unpack(out.sample, x.shape, 2)

    return _image(name, model, call, 1, 4, 8, 8)


def qwenimage(seed=0) -> Case:
    return _qwen_like(diffusers.QwenImageTransformer2DModel, seed, "qwenimage", guidance_embeds=False)


def nucleusmoe_image(seed=0) -> Case:
    return _qwen_like(
        diffusers.NucleusMoEImageTransformer2DModel,
        seed,
        "nucleusmoe_image",
        moe_enabled=False,
        capacity_factors=[8.0, 8.0],
    )


def qwenimage21(seed=0) -> Case:
    """Qwen-Image 2.1: one block-causal stream of text then image tokens; the output covers both."""
    model = _model(
        diffusers.QwenImage21Transformer2DModel,
        seed,
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        context_in_dim=8,
        mlp_ratio=2,
        axes_dims_rope=(4, 6, 6),
    )
    text_len, tokens = 4, 4
    text, mask = _randn(_rng(seed), 1, text_len, 8), torch.ones(1, text_len, dtype=torch.long)
    image_slots = torch.zeros(1, text_len + tokens // 4, dtype=torch.bool)  # one slot per 2x2 group of latents
    image_slots[:, text_len:] = True

    def call(m, x, t):
        out = m(
            _pack(x, 1),
            encoder_hidden_states=text,
            timestep=_flow(t),
            img_shapes=[[(1, 2, 2)]],
            img_mask=image_slots,
            encoder_hidden_states_mask=mask,
        )
        return _unpack(out.sample[:, -tokens:], x.shape, 1)

    return _image("qwenimage21", model, call, 1, 4, 2, 2)


def krea2(seed=0) -> Case:
    """Krea 2: fuses several text-encoder layers, then one stream of text + 2x2-packed image tokens."""
    model = _model(
        diffusers.Krea2Transformer2DModel,
        seed,
        in_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=32,
        timestep_embed_dim=8,
        text_hidden_dim=16,
        num_text_layers=3,
        text_num_attention_heads=2,
        text_num_key_value_heads=1,
        text_intermediate_size=16,
        num_layerwise_text_blocks=1,
        num_refiner_text_blocks=1,
        axes_dims_rope=(4, 2, 2),
        rope_theta=1000.0,
        norm_eps=1e-5,
    )
    text_len = 4
    text = _randn(_rng(seed), 1, text_len, 3, 16)  # (B, L, text layers, D)
    mask = torch.ones(1, text_len, dtype=torch.bool)
    mask[:, -1] = False  # a padded text token
    positions = torch.cat([torch.zeros(text_len, 3), _grid_ids(2, 2, axes=3)])

    def call(m, x, t):
        out = m(_pack(x, 2), text, _flow(t), position_ids=positions, encoder_attention_mask=mask)
        return _unpack(out.sample, x.shape, 2)

    return _image("krea2", model, call, 1, 4, 4, 4)


def ideogram4(seed=0) -> Case:
    """Ideogram 4: one sequence of LLM-feature slots then image slots, told apart by an indicator; t = 1 at clean."""
    from diffusers.models.transformers.transformer_ideogram4 import (
        IMAGE_POSITION_OFFSET,
        LLM_TOKEN_INDICATOR,
        OUTPUT_IMAGE_INDICATOR,
    )

    model = _model(
        diffusers.Ideogram4Transformer2DModel,
        seed,
        in_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        intermediate_size=32,
        adaln_dim=16,
        llm_features_dim=24,
        rope_theta=10_000,
        mrope_section=(2, 1, 1),
        norm_eps=1e-5,
    )
    text_len, tokens = 4, 4
    text = torch.cat([_randn(_rng(seed), 1, text_len, 24), torch.zeros(1, tokens, 24)], dim=1)
    positions = torch.cat(
        [torch.arange(text_len)[:, None].expand(text_len, 3), _grid_ids(2, 2, axes=3).long() + IMAGE_POSITION_OFFSET]
    )[None]
    segments = torch.ones(1, text_len + tokens, dtype=torch.long)
    indicator = torch.tensor([LLM_TOKEN_INDICATOR] * text_len + [OUTPUT_IMAGE_INDICATOR] * tokens)[None]

    def call(m, x, t):
        hidden = torch.cat([torch.zeros(1, text_len, 16), _pack(x, 2)], dim=1)
        out = m(hidden, _flow_inverted(t), text, position_ids=positions, segment_ids=segments, indicator=indicator)
        return _unpack(out.sample[:, text_len:], x.shape, 2)

    return _image("ideogram4", model, call, 1, 4, 4, 4)


# -- video: (B, C, F, H, W) --------------------------------------------------------------------------------------------


def _frames_first(x: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) <-> (B, F, C, H, W), the layout CogVideoX-like models take."""
    return x.transpose(1, 2)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) as (B, F, H, W, C), the layout Kandinsky takes."""
    return x.permute(0, 2, 3, 4, 1)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 4, 1, 2, 3)


def _pack_video(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, F, H, W) latents as (B, F * H/p * W/p, C*p*p) tokens."""
    tokens = _pack(_frames_first(x).flatten(0, 1), patch)
    return tokens.reshape(x.shape[0], -1, tokens.shape[-1])


def _unpack_video(tokens: torch.Tensor, shape: torch.Size, patch: int) -> torch.Tensor:
    b, c, f, h, w = shape
    frames = _unpack(tokens.reshape(b * f, -1, tokens.shape[-1]), (b * f, c, h, w), patch)
    return _frames_first(frames.reshape(b, f, c, h, w))


def _cogvideox(seed, name, frames, rope, head_dim=8, **config) -> Case:
    model = _model(
        diffusers.CogVideoXTransformer3DModel,
        seed,
        num_attention_heads=2,
        attention_head_dim=head_dim,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=8,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=8,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=8,
        **config,
    )
    text = _randn(_rng(seed), 2, 8, 8)

    def call(m, x, t):
        return _frames_first(m(_frames_first(x), text, t, image_rotary_emb=rope).sample)

    return _video(name, model, call, 2, 4, frames, 8, 8)


def cogvideox(seed=0) -> Case:
    """CogVideoX 1.0: text and video tokens in one expert-adaLN stream, sincos positions; a single frame."""
    return _cogvideox(seed, "cogvideox", 1, None, patch_size_t=None)


def cogvideox15(seed=0) -> Case:
    """CogVideoX 1.5: 2x2x2 patches and 3-D RoPE as its pipeline builds it (the test passes no RoPE tables; the
    RoPE split needs a head of 16 rather than the test's 8)."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    rope = get_3d_rotary_pos_embed(16, None, (4, 4), temporal_size=1, grid_type="slice", max_size=(4, 4))
    return _cogvideox(seed, "cogvideox15", 2, rope, head_dim=16, patch_size_t=2, use_rotary_positional_embeddings=True)


def consisid(seed=0) -> Case:
    """ConsisID: CogVideoX plus a face-identity perceiver that cross-attends every block."""
    model = _model(
        diffusers.ConsisIDTransformer3DModel,
        seed,
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=8,
        num_layers=1,
        sample_width=8,
        sample_height=8,
        sample_frames=8,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=8,
        cross_attn_interval=1,
        is_kps=False,
        is_train_face=True,
        cross_attn_dim_head=1,
        cross_attn_num_heads=1,
        LFE_id_dim=2,
        LFE_vit_dim=2,
        LFE_depth=5,
        LFE_dim_head=8,
        LFE_num_heads=2,
        LFE_num_id_token=1,
        LFE_num_querie=1,
        LFE_output_dim=10,
        LFE_ff_mult=1,
        LFE_num_scale=1,
    )
    text = _randn(_rng(seed), 2, 8, 8)
    faces = {"id_vit_hidden": [torch.ones(2, 2, 2)], "id_cond": torch.ones(2, 2)}

    def call(m, x, t):
        return _frames_first(m(_frames_first(x), text, t, **faces).sample)

    return _video("consisid", model, call, 2, 4, 1, 8, 8)


def allegro(seed=0) -> Case:
    model = _model(
        diffusers.AllegroTransformer3DModel,
        seed,
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        cross_attention_dim=16,
        sample_width=8,
        sample_height=8,
        sample_frames=8,
        caption_channels=8,
    )
    text = _randn(_rng(seed), 2, 16, 8)

    def call(m, x, t):
        return m(x, text, t).sample

    return _video("allegro", model, call, 2, 4, 2, 8, 8)


def latte(seed=0) -> Case:
    """Latte: spatial blocks over (B*F, S) and temporal blocks over (B*S, F), reshaped in between."""
    model = _model(
        diffusers.LatteTransformer3DModel,
        seed,
        sample_size=8,
        num_layers=1,
        patch_size=2,
        attention_head_dim=4,
        num_attention_heads=2,
        caption_channels=8,
        in_channels=4,
        cross_attention_dim=8,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    text = _randn(_rng(seed), 2, 8, 8)

    def call(m, x, t):
        return m(x, timestep=t, encoder_hidden_states=text, enable_temporal_attentions=True).sample[:, :4]

    return _video("latte", model, call, 2, 4, 1, 8, 8)


def mochi(seed=0) -> Case:
    """Mochi: asymmetric joint attention (a narrow text stream), 3-D RoPE."""
    model = _model(
        diffusers.MochiTransformer3DModel,
        seed,
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=4,
        out_channels=None,
        qk_norm="rms_norm",
        text_embed_dim=16,
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=16,
    )
    text, mask = _randn(_rng(seed), 2, 16, 16), torch.ones(2, 16, dtype=torch.bool)

    def call(m, x, t):
        return m(x, text, t, mask).sample

    return _video("mochi", model, call, 2, 4, 2, 16, 16)


def ltx(seed=0) -> Case:
    """LTX-Video: one-pixel video tokens, 3-D RoPE from the frame/height/width it is given."""
    model = _model(
        diffusers.LTXVideoTransformer3DModel,
        seed,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=1,
        qk_norm="rms_norm_across_heads",
        caption_channels=16,
    )
    text, mask = _randn(_rng(seed), 2, 16, 16), torch.ones(2, 16, dtype=torch.bool)

    def call(m, x, t):
        out = m(_tokens(x), text, t, mask, num_frames=2, height=16, width=16).sample
        return _untokens(out, x.shape)

    return _video("ltx", model, call, 2, 4, 2, 16, 16)


def ltx2(seed=0) -> Case:
    """LTX-2: video and audio streams with cross-modal attention; the audio latents are held fixed here."""
    model = _model(
        diffusers.LTX2VideoTransformer3DModel,
        seed,
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=16,
        rope_double_precision=False,
    )
    rng = _rng(seed)
    audio, text, audio_text = _randn(rng, 2, 9, 4), _randn(rng, 2, 16, 16), _randn(rng, 2, 16, 16)
    mask = torch.ones(2, 16, dtype=torch.bool)

    def call(m, x, t):
        out = m(
            _tokens(x),
            audio,
            text,
            audio_text,
            t.float(),
            encoder_attention_mask=mask,
            num_frames=2,
            height=16,
            width=16,
            fps=25.0,
            audio_num_frames=9,
        ).sample
        return _untokens(out, x.shape)

    return _video("ltx2", model, call, 2, 4, 2, 16, 16)


_HUNYUAN_VIDEO_CONFIG = dict(
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=10,
    num_layers=1,
    num_single_layers=1,
    num_refiner_layers=1,
    patch_size=1,
    patch_size_t=1,
    text_embed_dim=16,
    pooled_projection_dim=8,
    rope_axes_dim=(2, 4, 4),
)


def _hunyuan_video(seed, in_channels, guidance, image_condition_type) -> tuple[torch.nn.Module, Callable]:
    model = _model(
        diffusers.HunyuanVideoTransformer3DModel,
        seed,
        in_channels=in_channels,
        guidance_embeds=guidance,
        image_condition_type=image_condition_type,
        **_HUNYUAN_VIDEO_CONFIG,
    )
    rng = _rng(seed)
    text, pooled, mask = _randn(rng, 1, 12, 16), _randn(rng, 1, 8), torch.ones(1, 12)
    extra = {"guidance": torch.full((1,), 6.0)} if guidance else {}

    def run(m, hidden, t):
        return m(hidden, t.float(), text, mask, pooled, **extra).sample

    return model, run


def hunyuan_video(seed=0) -> Case:
    """HunyuanVideo: token refiner, double-stream (joint) and single-stream blocks, 3-D RoPE, guidance embedding."""
    model, run = _hunyuan_video(seed, 4, True, None)
    return _video("hunyuan_video", model, run, 1, 4, 1, 16, 16)


def hunyuan_video_i2v(seed=0) -> Case:
    """HunyuanVideo I2V: image latents and a mask concatenated to the noisy latents on the channel axis."""
    model, run = _hunyuan_video(seed, 2 * 4 + 1, False, "latent_concat")
    condition = torch.cat([_randn(_rng(seed + 1), 1, 4, 1, 16, 16), torch.ones(1, 1, 1, 16, 16)], dim=1)

    def call(m, x, t):
        return run(m, torch.cat([x, condition], dim=1), t)

    return _video("hunyuan_video_i2v", model, call, 1, 4, 1, 16, 16)


def hunyuan_video_token_replace(seed=0) -> Case:
    """HunyuanVideo I2V, token-replace variant: first-frame tokens modulated at t = 0 (2 channels in, 4 out)."""
    model, run = _hunyuan_video(seed, 2, True, "token_replace")

    def call(m, x, t):
        return run(m, x, t)[:, :2]

    return _video("hunyuan_video_token_replace", model, call, 1, 2, 1, 16, 16)


def hunyuan_video15(seed=0) -> Case:
    """HunyuanVideo 1.5: two text encoders plus image embeddings as extra context tokens."""
    model = _model(
        diffusers.HunyuanVideo15Transformer3DModel,
        seed,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=16,
        text_embed_2_dim=8,
        image_embed_dim=12,
        rope_axes_dim=(2, 2, 4),
        target_size=16,
        task_type="t2v",
    )
    rng = _rng(seed)
    text, text_2 = _randn(rng, 1, 6, 16), _randn(rng, 1, 4, 8)
    context = {
        "encoder_hidden_states": text,
        "encoder_attention_mask": torch.ones(1, 6),
        "encoder_hidden_states_2": text_2,
        "encoder_attention_mask_2": torch.ones(1, 4),
        "image_embeds": torch.zeros(1, 3, 12),
    }

    def call(m, x, t):
        return m(x, t.float(), **context).sample

    return _video("hunyuan_video15", model, call, 1, 4, 1, 8, 8)


def hunyuan_video_framepack(seed=0) -> Case:
    """FramePack: HunyuanVideo over the noisy section plus clean and 2x/4x-downsampled history latents."""
    model = _model(
        diffusers.HunyuanVideoFramepackTransformer3DModel,
        seed,
        in_channels=4,
        guidance_embeds=True,
        image_condition_type=None,
        has_image_proj=True,
        image_proj_dim=16,
        has_clean_x_embedder=True,
        **{**_HUNYUAN_VIDEO_CONFIG, "patch_size": 2},
    )
    rng = _rng(seed)
    frames = 3
    context = {
        "encoder_hidden_states": _randn(rng, 1, 12, 16),
        "encoder_attention_mask": torch.ones(1, 12),
        "pooled_projections": _randn(rng, 1, 8),
        "guidance": torch.full((1,), 6.0),
        "image_embeds": _randn(rng, 1, 12, 16),
        "indices_latents": torch.ones(frames),
        "latents_clean": _randn(rng, 1, 4, frames - 1, 4, 4),
        "indices_latents_clean": torch.ones(frames - 1),
        "latents_history_2x": _randn(rng, 1, 4, frames - 1, 4, 4),
        "indices_latents_history_2x": torch.ones(frames - 1),
        "latents_history_4x": _randn(rng, 1, 4, (frames - 1) * 4, 4, 4),
        "indices_latents_history_4x": torch.ones((frames - 1) * 4),
    }

    def call(m, x, t):
        return m(x, t.float(), **context).sample

    return _video("hunyuan_video_framepack", model, call, 1, 4, frames, 4, 4)


_WAN_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)


def _wan_like(cls, seed, name, channels=4, text_dim=16, frames=2, size=16, **config) -> Case:
    """Wan-shaped models: (1, 2, 2) patches, 12 text tokens, timesteps in [0, 1000]."""
    model = _model(
        cls, seed, in_channels=channels, out_channels=channels, text_dim=text_dim, **{**_WAN_CONFIG, **config}
    )
    text = _randn(_rng(seed), 1, 12, text_dim)

    def call(m, x, t):
        return m(x, t, text).sample

    return _video(name, model, call, 1, channels, frames, size, size)


def wan(seed=0) -> Case:
    return _wan_like(diffusers.WanTransformer3DModel, seed, "wan")


def skyreels_v2(seed=0) -> Case:
    return _wan_like(diffusers.SkyReelsV2Transformer3DModel, seed, "skyreels_v2")


def chronoedit(seed=0) -> Case:
    """ChronoEdit: Wan with a temporal RoPE skip between the input and the edited frame."""
    return _wan_like(
        diffusers.ChronoEditTransformer3DModel,
        seed,
        "chronoedit",
        channels=16,
        text_dim=32,
        size=8,
        freq_dim=16,
        eps=1e-6,
        image_dim=None,
        added_kv_proj_dim=None,
        rope_max_seq_len=64,
        pos_embed_seq_len=None,
        rope_temporal_skip_len=8,
    )


def wan_vace(seed=0) -> Case:
    """Wan VACE: control latents through extra VACE blocks whose outputs are added as hints."""
    model = _model(
        diffusers.WanVACETransformer3DModel,
        seed,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        vace_layers=[0, 2],
        vace_in_channels=48,
        **{**_WAN_CONFIG, "num_layers": 4},
    )
    rng = _rng(seed)
    text, control = _randn(rng, 1, 12, 32), _randn(rng, 1, 48, 2, 16, 16)

    def call(m, x, t):
        return m(x, t, text, control_hidden_states=control).sample

    return _video("wan_vace", model, call, 1, 16, 2, 16, 16)


def wan_animate(seed=0) -> Case:
    """Wan-Animate: reference latents on the channel axis, pose latents, and a face video through a motion encoder."""
    model = _model(
        diffusers.WanAnimateTransformer3DModel,
        seed,
        in_channels=12,
        latent_channels=4,
        out_channels=4,
        text_dim=16,
        image_dim=16,
        motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16},
        motion_encoder_size=16,
        motion_style_dim=8,
        motion_dim=4,
        motion_encoder_dim=16,
        face_encoder_hidden_dim=16,
        face_encoder_num_heads=2,
        inject_face_latents_blocks=2,
        **_WAN_CONFIG,
    )
    rng = _rng(seed)
    frames = 21  # the test's 20 pose frames plus the reference frame
    reference = _randn(rng, 1, 8, frames, 16, 16)
    context = {
        "encoder_hidden_states": _randn(rng, 1, 12, 16),
        "encoder_hidden_states_image": _randn(rng, 1, 12, 16),
        "pose_hidden_states": _randn(rng, 1, 4, frames - 1, 16, 16),
        "face_pixel_values": _randn(rng, 1, 3, 77, 16, 16),
    }

    def call(m, x, t):
        return m(torch.cat([x, reference], dim=1), t, **context).sample

    return _video("wan_animate", model, call, 1, 4, frames, 16, 16)


def wan_animate2(seed=0) -> Case:
    """Wan-Animate 2: a reference pass fills a per-layer KV cache once; the denoising passes attend to it."""
    from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache

    model = _model(
        diffusers.WanAnimate2Transformer3DModel,
        seed,
        patch_size=(1, 2, 2),
        text_len=16,
        in_dim=16 + 20,
        dim=128,
        ffn_dim=256,
        freq_dim=64,
        text_dim=32,
        out_dim=16,
        num_heads=4,
        num_layers=2,
        cross_attn_norm=True,
        use_img_emb=True,
    )
    rng = _rng(seed)
    reference_frames, frames, grid = 2, 3, torch.tensor([[2, 2, 2]])  # grid: reference (frames, h/2, w/2)
    text, image = [_randn(rng, 8, 32)], _randn(rng, 1, 4, 1280)
    cache = WanAnimate2KVCache(2)
    with torch.no_grad():
        model(
            [_randn(rng, 16, reference_frames, 4, 4)],
            torch.ones(1),
            text,
            [_randn(rng, 20, reference_frames, 4, 4)],
            kv_cache=cache,
            kv_cache_mode="extract",
            seq_len=reference_frames * 4,
            encoder_hidden_states_image=image,
            offset_grid_sizes=grid,
        )
    condition = [_randn(rng, 20, frames, 4, 4)]

    def call(m, x, t):
        out = m(
            [x[0]],
            t.float(),
            text,
            condition,
            kv_cache=cache,
            kv_cache_mode="cached",
            seq_len=frames * 4,
            encoder_hidden_states_image=image,
            reference_grid_sizes=grid,
            origin_len=5,  # the segment's pixel frames and size, which size the block-causal mask
            origin_area=[32, 32],
        ).sample
        return torch.stack(out)

    return _video("wan_animate2", model, call, 1, 16, frames, 4, 4)


def helios(seed=0) -> Case:
    """Helios: Wan-like blocks over the noisy chunk plus short/mid/long history latents."""
    model = _model(
        diffusers.HeliosTransformer3DModel,
        seed,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_dim=(4, 4, 4),
        has_multi_term_memory_patch=True,
        guidance_cross_attn=True,
        zero_history_timestep=True,
        is_amplify_history=False,
    )
    rng = _rng(seed)
    frames = 2
    context = {
        "encoder_hidden_states": _randn(rng, 1, 12, 16),
        "indices_hidden_states": torch.ones(1, frames),
        "indices_latents_history_short": torch.ones(1, frames - 1),
        "indices_latents_history_mid": torch.ones(1, frames - 1),
        "indices_latents_history_long": torch.ones(1, (frames - 1) * 4),
        "latents_history_short": _randn(rng, 1, 4, frames - 1, 16, 16),
        "latents_history_mid": _randn(rng, 1, 4, frames - 1, 16, 16),
        "latents_history_long": _randn(rng, 1, 4, (frames - 1) * 4, 16, 16),
    }

    def call(m, x, t):
        return m(x, t, **context).sample

    return _video("helios", model, call, 1, 4, frames, 16, 16)


_ANYFLOW_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=4,
    out_channels=4,
    text_dim=16,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    rope_max_seq_len=32,
    gate_value=0.25,
    deltatime_type="r",
)


def _flow_map_times(t: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame (B, F) start and target times of a flow map; the target halves the time, as the test's (500, 250)."""
    start = t.float()[:, None].expand(-1, frames)
    return start, start / 2


def anyflow(seed=0) -> Case:
    """AnyFlow: a Wan flow map, conditioned on a start and a target time per frame; frames-first layout."""
    model = _model(diffusers.AnyFlowTransformer3DModel, seed, **_ANYFLOW_CONFIG)
    text = _randn(_rng(seed), 1, 12, 16)

    def call(m, x, t):
        start, target = _flow_map_times(t, x.shape[2])
        return _frames_first(m(_frames_first(x), start, target, text).sample)

    return _video("anyflow", model, call, 1, 4, 2, 16, 16)


def anyflow_far(seed=0) -> Case:
    """AnyFlow-FAR: frame-autoregressive chunks under a block-causal (flex-attention) mask, older chunks compressed."""
    model = _model(
        diffusers.AnyFlowFARTransformer3DModel,
        seed,
        compressed_patch_size=(1, 4, 4),
        full_chunk_limit=3,
        **_ANYFLOW_CONFIG,
    )
    text = _randn(_rng(seed), 1, 12, 16)

    def call(m, x, t):
        start, target = _flow_map_times(t, x.shape[2])
        return _frames_first(m(_frames_first(x), start, target, text, chunk_partition=[2, 2]).sample)

    return _video("anyflow_far", model, call, 1, 4, 4, 16, 16)


def easyanimate(seed=0) -> Case:
    model = _model(
        diffusers.EasyAnimateTransformer3DModel,
        seed,
        attention_head_dim=16,
        num_attention_heads=2,
        in_channels=4,
        mmdit_layers=2,
        num_layers=2,
        out_channels=4,
        patch_size=2,
        sample_height=60,
        sample_width=90,
        text_embed_dim=16,
        time_embed_dim=8,
        time_position_encoding_type="3d_rope",
        timestep_activation_fn="silu",
    )
    text = _randn(_rng(seed), 2, 16, 16)

    def call(m, x, t):
        return m(x, t, encoder_hidden_states=text).sample

    return _video("easyanimate", model, call, 2, 4, 2, 16, 16)


def cosmos3_omni(seed=0) -> Case:
    """Cosmos 3 Omni: a mixture-of-transformers decoder over text ids and patchified vision latents (the 4x4 test)."""
    model = _model(
        diffusers.Cosmos3OmniTransformer,
        seed,
        head_dim=6,
        hidden_act="relu2",
        hidden_size=12,
        intermediate_size=24,
        latent_channel=2,
        latent_patch_size=1,
        num_attention_heads=2,
        num_hidden_layers=2,
        num_key_value_heads=1,
        patch_latent_dim=2,
        qk_norm_for_text=False,
        rms_norm_eps=1e-5,
        rope_axes_dim=[1, 1, 1],
        rope_theta=1e8,
        vocab_size=32,
    )
    tokens, length = 16, 2 + 16
    vision = torch.arange(2, length)
    packing = {
        "input_ids": torch.tensor([1, 2]),
        "text_indexes": torch.tensor([0, 1]),
        "position_ids": torch.zeros(3, length, dtype=torch.long),
        "und_len": 2,
        "sequence_length": length,
        "vision_token_shapes": [(1, 4, 4)],
        "vision_sequence_indexes": vision,
        "vision_mse_loss_indexes": vision,
        "vision_noisy_frame_indexes": [torch.tensor([0])],
    }

    def call(m, x, t):
        return m(vision_tokens=[x], vision_timesteps=t.float().expand(tokens), **packing).sample[0]

    return _video("cosmos3_omni", model, call, 1, 2, 1, 4, 4)


def sana_video(seed=0) -> Case:
    model = _model(
        diffusers.SanaVideoTransformer3DModel,
        seed,
        in_channels=16,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=12,
        cross_attention_dim=24,
        caption_channels=16,
        mlp_ratio=2.5,
        dropout=0.0,
        attention_bias=False,
        sample_size=8,
        patch_size=(1, 2, 2),
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    text = _randn(_rng(seed), 1, 12, 16)

    def call(m, x, t):
        return m(x, text, t).sample

    return _video("sana_video", model, call, 1, 16, 2, 16, 16)


def sana_wm(seed=0) -> Case:
    """SANA-WM: a camera-controlled world model; GDN (gated delta) and softmax blocks alternate."""
    from diffusers.models.transformers.transformer_sana_wm import SanaWMTemporalShortConvolution

    model = _model(
        diffusers.SanaWMTransformer3DModel,
        seed,
        in_channels=4,
        num_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        patch_size=(1, 1, 1),
        softmax_every_n=2,
        linear_head_dim=16,
        t_kernel_size=3,
        conv_kernel_size=4,
        caption_channels=8,
        mlp_ratio=2.0,
        chunk_plucker_channels=8,
        chunk_plucker_post_attn_blocks=2,
    )
    rng = _rng(seed)
    for module in model.modules():  # the GDN short convolutions start at zero, which would silence that branch
        if isinstance(module, SanaWMTemporalShortConvolution):
            module.weight.data = _randn(rng, *module.weight.shape)
    frames, size = 4, 8
    camera = torch.eye(4).repeat(1, frames, 1, 1)  # a forward translation with an identity rotation
    camera[..., 2, 3] = torch.arange(frames) * 0.1
    intrinsics = torch.tensor([float(size), float(size), size / 2, size / 2]).expand(1, frames, 4)
    context = {
        "encoder_hidden_states": _randn(rng, 1, 1, 16, 8),
        "encoder_attention_mask": torch.ones(1, 16, dtype=torch.long),
        "camera_conditions": torch.cat([camera.flatten(-2), intrinsics], dim=-1),
        "chunk_plucker": _randn(rng, 1, 8, frames, size, size),
    }

    def call(m, x, t):
        return m(x, t.float()[:, None, None].expand(-1, 1, frames), **context).sample

    return _video("sana_wm", model, call, 1, 4, frames, size, size)


def sana_wm_refiner(seed=0) -> Case:
    """SANA-WM's LTX-2-based refiner: video-only, one timestep per token, caller-supplied RoPE."""
    model = _model(
        diffusers.SanaWMLTX2RefinerTransformer3DModel,
        seed,
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=16,
        rope_double_precision=False,
    )
    frames, size = 2, 4
    text, mask = _randn(_rng(seed), 2, 8, 16), torch.ones(2, 8)
    rope = model.build_rotary_emb_for_absolute_positions(
        batch_size=2, frame_positions=list(range(frames)), height=size, width=size, device=torch.device("cpu"), fps=24.0
    )

    def call(m, x, t):
        tokens = _tokens(x)
        per_token = t.float()[:, None].expand(-1, tokens.shape[1])
        out = m(tokens, text, per_token, video_rotary_emb=rope, encoder_attention_mask=mask).sample
        return _untokens(out, x.shape)

    return _video("sana_wm_refiner", model, call, 2, 4, frames, size, size)


def motif_video(seed=0) -> Case:
    """Motif-Video: latents, condition latents and a mask on the channel axis (33 in, 16 out)."""
    model = _model(
        diffusers.MotifVideoTransformer3DModel,
        seed,
        in_channels=33,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=1,
        num_single_layers=1,
        num_decoder_layers=0,
        mlp_ratio=4.0,
        patch_size=1,
        patch_size_t=1,
        qk_norm="rms_norm",
        norm_type="layer_norm",
        text_embed_dim=32,
        image_embed_dim=4,
        rope_theta=256.0,
        rope_axes_dim=(4, 4, 4),
        enable_text_cross_attention_dual=False,
        enable_text_cross_attention_single=False,
    )
    rng = _rng(seed)
    frames = 9
    text = _randn(rng, 1, 12, 32)
    condition = torch.cat([_randn(rng, 1, 16, frames, 16, 16), torch.ones(1, 1, frames, 16, 16)], dim=1)

    def call(m, x, t):
        return m(torch.cat([x, condition], dim=1), t, text).sample

    return _video("motif_video", model, call, 1, 16, frames, 16, 16)


_JOYIMAGE_CONFIG = dict(
    patch_size=[1, 2, 2],
    in_channels=16,
    hidden_size=32,
    num_attention_heads=2,
    text_dim=16,
    num_layers=2,
    rope_dim_list=[4, 6, 6],
    theta=256,
)


def joyimage_edit(seed=0) -> Case:
    model = _model(diffusers.JoyImageEditTransformer3DModel, seed, **_JOYIMAGE_CONFIG)
    text = _randn(_rng(seed), 1, 12, 16)

    def call(m, x, t):
        return m(x, t.float(), text).sample

    return _video("joyimage_edit", model, call, 1, 16, 1, 4, 4)


def joyimage_edit_plus(seed=0) -> Case:
    """JoyImage-Edit Plus: pre-patchified (B, patches, C, 1, 2, 2) input, the target image then a reference image."""
    model = _model(diffusers.JoyImageEditPlusTransformer3DModel, seed, **_JOYIMAGE_CONFIG)
    rng = _rng(seed)
    text, reference = _randn(rng, 1, 12, 16), _randn(rng, 1, 1, 16, 1, 2, 2)
    layout = [[(1, 1, 1), (1, 1, 1)]]  # (t, h, w) in patches: a one-patch target, a one-patch reference

    def call(m, x, t):
        patches = torch.cat([x[:, None], reference], dim=1)
        return m(patches, t.float(), text, shape_list=layout).sample[:, 0]

    return _video("joyimage_edit_plus", model, call, 1, 16, 1, 2, 2)


def _kandinsky5(seed, name, visual_cond) -> Case:
    """Kandinsky 5 (pipeline test config): channels-last latents, a Qwen text stream and a CLIP pooled embedding."""
    model = _model(
        diffusers.Kandinsky5Transformer3DModel,
        seed,
        in_visual_dim=16,
        in_text_dim=32,
        in_text_dim2=16,
        time_dim=16,
        out_visual_dim=16,
        patch_size=(1, 2, 2),
        model_dim=16,
        ff_dim=32,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(1, 1, 2),
        visual_cond=visual_cond,
        attention_type="regular",
    )
    rng = _rng(seed)
    frames, size = 1, 8
    text, pooled = _randn(rng, 1, 8, 32), _randn(rng, 1, 16)
    visual_rope = [torch.arange(frames), torch.arange(size // 2), torch.arange(size // 2)]  # the patch grid
    text_rope = torch.arange(8)
    condition = torch.cat([_randn(rng, 1, frames, size, size, 16), torch.ones(1, frames, size, size, 1)], dim=-1)

    def call(m, x, t):
        hidden = _channels_last(x)
        if visual_cond:
            hidden = torch.cat([hidden, condition], dim=-1)
        out = m(hidden, text, t.float(), pooled, visual_rope_pos=visual_rope, text_rope_pos=text_rope).sample
        return _channels_first(out)

    return _video(name, model, call, 1, 16, frames, size, size)


def kandinsky5(seed=0) -> Case:
    return _kandinsky5(seed, "kandinsky5", False)


def kandinsky5_i2v(seed=0) -> Case:
    """Kandinsky 5 image-to-video: condition latents and a mask appended on the (last) channel axis."""
    return _kandinsky5(seed, "kandinsky5_i2v", True)


def kandinsky6(seed=0) -> Case:
    """Kandinsky 6: a fused video/audio model run video-only; channels-last with condition + mask channels."""
    model = _model(
        diffusers.Kandinsky6Transformer3DModel,
        seed,
        in_visual_dim=4,
        out_visual_dim=4,
        in_text_dim=8,
        in_text_dim2=8,
        time_dim=16,
        patch_size=(1, 2, 2),
        model_dim=48,
        ff_dim=64,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(4, 4, 4),
        visual_cond=True,
        in_audio_dim=4,
        out_audio_dim=4,
    )
    rng = _rng(seed)
    frames, size = 2, 4
    text, pooled = _randn(rng, 1, 6, 8), _randn(rng, 1, 8)
    condition = torch.cat([_randn(rng, 1, frames, size, size, 4), torch.ones(1, frames, size, size, 1)], dim=-1)

    def call(m, x, t):
        hidden = torch.cat([_channels_last(x), condition], dim=-1)
        return _channels_first(m(hidden, text, pooled, t.float()).sample)

    return _video("kandinsky6", model, call, 1, 4, frames, size, size)


def kandinsky6_sr(seed=0) -> Case:
    """Kandinsky 6 super-resolution: flex-attention DiT over channels-last latents plus anchor latents and mask."""
    model = _model(
        diffusers.Kandinsky6SRTransformer3DModel,
        seed,
        in_visual_dim=4,
        out_visual_dim=8,
        time_dim=16,
        patch_size=(1, 2, 2),
        model_dim=24,
        ff_dim=32,
        num_visual_blocks=2,
        axes_dims=(4, 4, 4),
    )
    frames, size = 2, 16
    anchor = torch.cat([_randn(_rng(seed), 1, frames, size, size, 4), torch.ones(1, frames, size, size, 1)], dim=-1)

    def call(m, x, t):
        out = m(torch.cat([_channels_last(x), anchor], dim=-1), t.float()).sample
        return _channels_first(out[..., :4])  # 8 = 2 Piflow grid points x 4 channels

    return _video("kandinsky6_sr", model, call, 1, 4, frames, size, size)


def minimax_h3(seed=0) -> Case:
    """MiniMax-H3: one packed sequence of text, audio and (1, 2, 2)-patch video rows; the audio rows are held fixed."""
    model = _model(
        diffusers.MiniMaxH3Transformer3DModel,
        seed,
        num_attention_heads=2,
        attention_head_dim=16,
        hidden_size=24,
        num_layers=2,
        num_refiner_layers=2,
        ffn_dim=32,
        in_channels=4,
        audio_in_channels=6,
        patch_size=(1, 2, 2),
        text_dim=8,
        freq_dim=8,
        time_embed_hidden_dim=24,
        time_embed_dim=16,
        rope_freq_dim=2,
    )
    rng = _rng(seed)
    text_len, audio_len, video_len = 4, 6, 8  # video: 2 frames of a 2x2 patch grid
    length = text_len + audio_len + video_len
    text, audio = _randn(rng, 2, text_len, 8), _randn(rng, 2, audio_len, 6)
    tags = torch.tensor([1] * text_len + [2] * audio_len + [0] * video_len)  # 1 text, 2 audio, 0 video
    positions = torch.zeros(length, 3)
    positions[:, 0] = torch.arange(length)
    positions[text_len + audio_len :] = _grid_ids(2, 2, 2) + torch.tensor([text_len + audio_len, 0.0, 0.0])
    layout = {
        "timestep_indices": torch.zeros(length, dtype=torch.long),
        "token_tags": tags,
        "position_ids": positions,
        "text_indices": torch.arange(text_len),
        "audio_indices": torch.arange(text_len, text_len + audio_len),
        "video_indices": torch.arange(text_len + audio_len, length),
    }

    def call(m, x, t):  # `timestep` lists the distinct noise levels of the sequence, shared by the batch
        out = m(_pack_video(x, 2), audio, text, _flow(t[:1]), **layout).sample
        return _unpack_video(out, x.shape, 2)

    return _video("minimax_h3", model, call, 2, 4, 2, 4, 4)


def _cosmos(seed, name, in_channels, condition: bool) -> Case:
    model = _model(
        diffusers.CosmosTransformer3DModel,
        seed,
        in_channels=in_channels,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=2,
        mlp_ratio=2,
        text_embed_dim=16,
        adaln_lora_dim=4,
        max_size=(4, 32, 32),
        patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0),
        concat_padding_mask=True,
        extra_pos_embed_type="learnable",
    )
    context = {
        "encoder_hidden_states": _randn(_rng(seed), 1, 12, 16),
        "attention_mask": torch.ones(1, 12),
        "fps": 30,
        "padding_mask": torch.zeros(1, 1, 16, 16),
    }
    if condition:
        context["condition_mask"] = torch.ones(1, 1, 1, 16, 16)

    def call(m, x, t):
        return m(x, t, **context).sample

    return _video(name, model, call, 1, 4, 1, 16, 16)


def cosmos(seed=0) -> Case:
    """Cosmos 1.0 text-to-world: AdaLN-LoRA blocks, learnable extra positions, the padding mask as a channel."""
    return _cosmos(seed, "cosmos", 4, False)


def cosmos_video2world(seed=0) -> Case:
    """Cosmos 1.0 video-to-world: the condition mask as one more input channel."""
    return _cosmos(seed, "cosmos_video2world", 4 + 1, True)


# -- sequences: audio, embeddings, residues as (B, C, L) ---------------------------------------------------------------


def stable_audio(seed=0) -> Case:
    """Stable Audio Open (pipeline test config): a global token prepended, RoPE over half of each head."""
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    model = _model(
        diffusers.StableAudioDiTModel,
        seed,
        sample_size=4,
        in_channels=3,
        num_layers=2,
        attention_head_dim=4,
        num_key_value_attention_heads=2,
        out_channels=3,
        cross_attention_dim=4,
        time_proj_dim=8,
        global_states_input_dim=8,
        cross_attention_input_dim=4,
    )
    rng = _rng(seed)
    length = 8
    text, duration = _randn(rng, 2, 5, 4), _randn(rng, 2, 1, 8)
    rope = get_1d_rotary_pos_embed(2, length + 1, use_real=True, repeat_interleave_real=False)

    def call(m, x, t):  # return_dict=True would build a deprecated output class, whose warning breaks the graph
        return m(
            x,
            _flow(t),
            encoder_hidden_states=text,
            global_hidden_states=duration,
            rotary_embedding=rope,
            return_dict=False,
        )[0]

    return _sequence("stable_audio", model, call, 2, 3, length)


def stable_audio3(seed=0) -> Case:
    """Stable Audio 3: memory tokens and a global conditioning vector."""
    model = _model(
        diffusers.StableAudio3DiTModel,
        seed,
        io_channels=8,
        patch_size=1,
        embed_dim=32,
        depth=2,
        num_heads=4,
        cond_token_dim=16,
        global_cond_dim=12,
        local_add_cond_dim=5,
        timestep_features_dim=16,
        ff_mult=2,
        num_memory_tokens=3,
        use_differential_attention=False,
    )
    rng = _rng(seed)
    text, global_states = _randn(rng, 2, 4, 16), _randn(rng, 2, 12)

    def call(m, x, t):
        return m(x, _flow(t), encoder_hidden_states=text, global_hidden_states=global_states).sample

    return _sequence("stable_audio3", model, call, 2, 8, 16)


def ace_step(seed=0) -> Case:
    """ACE-Step 1.5: a mean-flow DiT (times t and r) over (B, L, C) acoustic latents plus context latents."""
    model = _model(
        diffusers.AceStepTransformer1DModel,
        seed,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        in_channels=24,
        audio_acoustic_hidden_dim=8,
        patch_size=2,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        sliding_window=16,
    )
    rng = _rng(seed)
    length = 8
    text, context = _randn(rng, 2, 10, 32), _randn(rng, 2, length, 16)

    def call(m, x, t):
        time = _flow(t)
        out = m(x.transpose(1, 2), time, time, encoder_hidden_states=text, context_latents=context).sample
        return out.transpose(1, 2)

    return _sequence("ace_step", model, call, 2, 8, length)


def longcat_audio(seed=0) -> Case:
    model = _model(
        diffusers.LongCatAudioDiTTransformer,
        seed,
        dit_dim=64,
        dit_depth=2,
        dit_heads=4,
        dit_text_dim=32,
        latent_dim=8,
        text_conv=False,
    )
    length = 16
    text = _randn(_rng(seed), 1, 10, 32)
    text_mask, mask = torch.ones(1, 10, dtype=torch.bool), torch.ones(1, length, dtype=torch.bool)

    def call(m, x, t):
        out = m(x.transpose(1, 2), text, text_mask, _flow(t), attention_mask=mask).sample
        return out.transpose(1, 2)

    return _sequence("longcat_audio", model, call, 1, 8, length)


def minimax_music3(seed=0) -> Case:
    """MiniMax-Music-3: a 1-D DiT whose conditioning is a frame-aligned sequence; t = 0 at noise."""
    model = _model(
        diffusers.MiniMaxMusic3Transformer1DModel,
        seed,
        in_channels=8,
        condition_dim=16,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=8,
        ff_inner_dim=32,
        rotary_dim=4,
        fourier_embedding_dim=8,
    )
    length = 24
    condition = _randn(_rng(seed), 1, length, 16)

    def call(m, x, t):
        return m(x, _flow_inverted(t), condition).sample

    return _sequence("minimax_music3", model, call, 1, 8, length)


def t5_film(seed=0) -> Case:
    """Spectrogram diffusion decoder (the removed pipeline's test config, narrowed): FiLM on noise time."""
    model = _model(
        diffusers.T5FilmDecoder,
        seed,
        input_dims=8,
        targets_length=16,
        max_decoder_noise_time=20000.0,
        d_model=32,
        num_layers=1,
        num_heads=2,
        d_kv=16,
        d_ff=64,
        dropout_rate=0.1,
    )
    encodings = [(_randn(_rng(seed), 2, 8, 32), torch.ones(2, 8))]

    def call(m, x, t):
        return m(encodings, x.transpose(1, 2), _flow(t)).transpose(1, 2)  # noise time in [0, 1)

    return _sequence("t5_film", model, call, 2, 8, 16)


def rfd4_proteina(seed=0) -> Case:
    """RFD4 (no test in diffusers; a minimal feature set): residues carry CA coordinates (3) and a local latent (8)."""
    model = _model(
        diffusers.RFD4ProteinaTransformer,
        seed,
        nlayers=2,
        token_dim=32,
        nheads=2,
        dim_cond=16,
        pair_repr_dim=16,
        latent_dim=8,
        token_type_emb_dim=8,
        t_emb_dim=16,
        xt_pair_dist_dim=8,
        feats_seq=("xt_bb_ca", "xt_local_latents", "token_type"),
        feats_cond_seq=("time_emb_bb_ca", "time_emb_local_latents"),
        feats_pair_repr=("xt_bb_ca_pair_dists",),
        tri_mult_c=16,
    )
    residues = 8
    mask = torch.ones(1, residues, dtype=torch.bool)
    conditioning = {"is_in_context_conditioning": torch.zeros_like(mask), "supports_local_latent": mask}
    protein = torch.zeros(1, residues, dtype=torch.long)  # token type 0

    def call(m, x, t):
        tokens, time = x.transpose(1, 2), _flow_inverted(t)
        out = m(
            tokens[..., :3],
            tokens[..., 3:],
            time,
            time,
            mask,
            token_type=protein,
            conditioning=conditioning,
        )
        return torch.cat([out.backbone, out.local_latents], dim=-1).transpose(1, 2)

    return _sequence("rfd4_proteina", model, call, 1, 3 + 8, residues)


# -- the registry ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RosterEntry:
    name: str  # the diffusers class name; a second config of one class adds a suffix, e.g. "[1.5]"
    build: Callable[[], Case] | None
    skip: str = ""  # non-empty: why it cannot run here


_NO_TORCHVISION = (
    ""
    if importlib.util.find_spec("torchvision")
    else "needs torchvision: the test config's concat_padding_mask=True resizes padding_mask with "
    "torchvision.transforms.functional.resize (NameError: name 'transforms' is not defined)"
)

ROSTER: tuple[RosterEntry, ...] = (
    # images
    RosterEntry("DiTTransformer2DModel", dit),
    RosterEntry("PixArtTransformer2DModel", pixart),
    RosterEntry("PriorTransformer", prior),
    RosterEntry("AuraFlowTransformer2DModel", auraflow),
    RosterEntry("SD3Transformer2DModel", sd3),
    RosterEntry("SD3Transformer2DModel[3.5]", sd35),
    RosterEntry("SanaTransformer2DModel", sana),
    RosterEntry("CogView3PlusTransformer2DModel", cogview3plus),
    RosterEntry("CogView4Transformer2DModel", cogview4),
    RosterEntry("HunyuanDiT2DModel", hunyuandit),
    RosterEntry("LuminaNextDiT2DModel", lumina_next),
    RosterEntry("Lumina2Transformer2DModel", lumina2),
    RosterEntry("HiDreamImageTransformer2DModel", hidream),
    RosterEntry("OmniGenTransformer2DModel", omnigen),
    RosterEntry("GlmImageTransformer2DModel", glm_image),
    RosterEntry("ErnieImageTransformer2DModel", ernie_image),
    RosterEntry("PRXTransformer2DModel", prx),
    RosterEntry("BriaFibo2Transformer2DModel", bria_fibo2),
    RosterEntry("ZImageTransformer2DModel", z_image),
    RosterEntry("HunyuanImageTransformer2DModel", hunyuan_image),
    # images as packed tokens
    RosterEntry("FluxTransformer2DModel", flux),
    RosterEntry("ChromaTransformer2DModel", chroma),
    RosterEntry("LongCatImageTransformer2DModel", longcat_image),
    RosterEntry("OvisImageTransformer2DModel", ovis_image),
    RosterEntry("BriaTransformer2DModel", bria),
    RosterEntry("BriaFiboTransformer2DModel", bria_fibo),
    RosterEntry("Flux2Transformer2DModel", flux2),
    RosterEntry("Flux2Transformer2DModel[kv_cache]", flux2_kv),
    RosterEntry("Flux3Transformer2DModel", flux3),
    RosterEntry("QwenImageTransformer2DModel", qwenimage),
    RosterEntry("NucleusMoEImageTransformer2DModel", nucleusmoe_image),
    RosterEntry("QwenImage21Transformer2DModel", qwenimage21),
    RosterEntry("Krea2Transformer2DModel", krea2),
    RosterEntry("Ideogram4Transformer2DModel", ideogram4),
    # video
    RosterEntry("CogVideoXTransformer3DModel", cogvideox),
    RosterEntry("CogVideoXTransformer3DModel[1.5]", cogvideox15),
    RosterEntry("ConsisIDTransformer3DModel", consisid),
    RosterEntry("AllegroTransformer3DModel", allegro),
    RosterEntry("LatteTransformer3DModel", latte),
    RosterEntry("MochiTransformer3DModel", mochi),
    RosterEntry("LTXVideoTransformer3DModel", ltx),
    RosterEntry("LTX2VideoTransformer3DModel", ltx2),
    RosterEntry("HunyuanVideoTransformer3DModel", hunyuan_video),
    RosterEntry("HunyuanVideoTransformer3DModel[i2v]", hunyuan_video_i2v),
    RosterEntry("HunyuanVideoTransformer3DModel[token_replace]", hunyuan_video_token_replace),
    RosterEntry("HunyuanVideo15Transformer3DModel", hunyuan_video15),
    RosterEntry("HunyuanVideoFramepackTransformer3DModel", hunyuan_video_framepack),
    RosterEntry("WanTransformer3DModel", wan),
    RosterEntry("SkyReelsV2Transformer3DModel", skyreels_v2),
    RosterEntry("ChronoEditTransformer3DModel", chronoedit),
    RosterEntry("WanVACETransformer3DModel", wan_vace),
    RosterEntry("WanAnimateTransformer3DModel", wan_animate),
    RosterEntry("WanAnimate2Transformer3DModel", wan_animate2),
    RosterEntry("HeliosTransformer3DModel", helios),
    RosterEntry("AnyFlowTransformer3DModel", anyflow),
    RosterEntry("AnyFlowFARTransformer3DModel", anyflow_far),
    RosterEntry("EasyAnimateTransformer3DModel", easyanimate),
    RosterEntry("CosmosTransformer3DModel", cosmos, _NO_TORCHVISION),
    RosterEntry("CosmosTransformer3DModel[video2world]", cosmos_video2world, _NO_TORCHVISION),
    RosterEntry("Cosmos3OmniTransformer", cosmos3_omni),
    RosterEntry("SanaVideoTransformer3DModel", sana_video),
    RosterEntry("SanaWMTransformer3DModel", sana_wm),
    RosterEntry("SanaWMLTX2RefinerTransformer3DModel", sana_wm_refiner),
    RosterEntry("MotifVideoTransformer3DModel", motif_video),
    RosterEntry("JoyImageEditTransformer3DModel", joyimage_edit),
    RosterEntry("JoyImageEditPlusTransformer3DModel", joyimage_edit_plus),
    RosterEntry("Kandinsky5Transformer3DModel", kandinsky5),
    RosterEntry("Kandinsky5Transformer3DModel[i2v]", kandinsky5_i2v),
    RosterEntry("Kandinsky6Transformer3DModel", kandinsky6),
    RosterEntry("Kandinsky6SRTransformer3DModel", kandinsky6_sr),
    RosterEntry("MiniMaxH3Transformer3DModel", minimax_h3),
    # sequences
    RosterEntry("StableAudioDiTModel", stable_audio),
    RosterEntry("StableAudio3DiTModel", stable_audio3),
    RosterEntry("AceStepTransformer1DModel", ace_step),
    RosterEntry("LongCatAudioDiTTransformer", longcat_audio),
    RosterEntry("MiniMaxMusic3Transformer1DModel", minimax_music3),
    RosterEntry("T5FilmDecoder", t5_film),
    RosterEntry("RFD4ProteinaTransformer", rfd4_proteina),
)
