"""Tiny diffusers pipelines built offline: random-weight transformer and VAE from configs, a real
scheduler, and prompt embeddings in place of a text encoder. Used by the pipeline and CLI tests."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiTPipeline,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    Lumina2Pipeline,
    Lumina2Transformer2DModel,
    PixArtAlphaPipeline,
)

from models import CAPTION_CHANNELS, tiny_dit, tiny_flux, tiny_pixart

TEXT_TOKENS = 5
WORDS = ("a", "photo", "of", "cat", "dog", "red", "panda")
CLASSES = {207: "golden retriever", 387: "red panda"}  # the tiny DiT's ImageNet labels


def tiny_tokenizer(max_length: int):
    """A word-level tokenizer over a few words (pad 0, end 1, unknown 2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=max_length
    )


def tiny_t5(width: int):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(2)
    config = T5Config(vocab_size=len(WORDS) + 3, d_model=width, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
    return T5EncoderModel(config).eval()


def tiny_clip(width: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(3)
    config = CLIPTextConfig(
        vocab_size=len(WORDS) + 3,
        hidden_size=width,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        pad_token_id=0,
        eos_token_id=1,
    )
    return CLIPTextModel(config).eval()


def tiny_vae(latent_channels: int = 4, levels: int = 1) -> AutoencoderKL:
    """A VAE with scale factor 2 ** (levels - 1): by default the latents are the image size."""
    torch.manual_seed(1)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8,) * levels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=8,
        shift_factor=0.0,
    ).eval()


def tiny_dit_pipeline(layers: int = 2, modulation_scale: float = 1.0, labels: bool = False) -> DiTPipeline:
    """``modulation_scale`` scales the adaLN modulation weights: DiT initialises them to zero and a
    trained DiT keeps them small, so its output changes smoothly over steps; random ones do not."""
    transformer = tiny_dit(layers, classes=1000)  # DiTPipeline's null class label is 1000
    with torch.no_grad():
        for block in transformer.transformer_blocks:
            block.norm1.linear.weight.mul_(modulation_scale)
    id2label = CLASSES if labels else None
    return DiTPipeline(transformer=transformer, vae=tiny_vae(), scheduler=DDIMScheduler(), id2label=id2label)


def tiny_pixart_pipeline(layers: int = 2, text_encoder: bool = False) -> PixArtAlphaPipeline:
    """With ``text_encoder``: a tiny T5 and tokenizer, and PixArt-α's 256-pixel resolution binning
    (sample size 32, VAE scale factor 8), so the pipeline runs from a prompt with its defaults."""
    transformer = tiny_pixart(layers, sample_size=32 if text_encoder else 8)
    return PixArtAlphaPipeline(
        tokenizer=tiny_tokenizer(TEXT_TOKENS) if text_encoder else None,
        text_encoder=tiny_t5(CAPTION_CHANNELS) if text_encoder else None,
        vae=tiny_vae(levels=4 if text_encoder else 1),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )


def tiny_flux_pipeline(double: int = 1, single: int = 2, text_encoder: bool = False) -> FluxPipeline:
    transformer = tiny_flux(double, single, in_channels=16)  # 4 latent channels packed 2x2
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(),
        text_encoder=tiny_clip(32) if text_encoder else None,
        tokenizer=tiny_tokenizer(77) if text_encoder else None,
        text_encoder_2=tiny_t5(32) if text_encoder else None,
        tokenizer_2=tiny_tokenizer(TEXT_TOKENS) if text_encoder else None,
        transformer=transformer,
    )


def tiny_lumina2_pipeline() -> Lumina2Pipeline:
    """Lumina2: it feeds the transformer 1 - t/1000, a timestep that rises from 0 to 1."""
    torch.manual_seed(0)
    transformer = Lumina2Transformer2DModel(
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
    return Lumina2Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(),
        text_encoder=None,
        tokenizer=None,
    )


def save_with_labels(pipe: DiTPipeline, folder) -> None:
    """``save_pretrained``, plus the ``id2label`` entry the hub's DiT model_index.json carries."""
    import json
    import os

    pipe.save_pretrained(folder)
    index = os.path.join(folder, "model_index.json")
    with open(index) as f:
        config = json.load(f)
    with open(index, "w") as f:
        json.dump({**config, "id2label": {str(k): v for k, v in CLASSES.items()}}, f)


def prompt_inputs(pipe) -> dict:
    """Keyword arguments that stand in for a prompt (and a negative prompt) without a text encoder."""
    generator = torch.Generator().manual_seed(100)
    if isinstance(pipe, DiTPipeline):
        return {"class_labels": [1, 7]}
    if isinstance(pipe, PixArtAlphaPipeline):
        embeds = torch.randn(1, TEXT_TOKENS, CAPTION_CHANNELS, generator=generator)
        mask = torch.ones(1, TEXT_TOKENS)
        mask[:, -1] = 0
        return {
            "prompt_embeds": embeds,
            "prompt_attention_mask": mask,
            "negative_prompt": None,
            "negative_prompt_embeds": torch.zeros_like(embeds),
            "negative_prompt_attention_mask": mask,
            "use_resolution_binning": False,
            "height": 8,
            "width": 8,
        }
    if isinstance(pipe, Lumina2Pipeline):  # its latents are 1/8 of the image: 8x8 latents
        embeds, mask = (
            torch.randn(1, TEXT_TOKENS, 16, generator=generator),
            torch.ones(1, TEXT_TOKENS, dtype=torch.bool),
        )
        return {
            "prompt_embeds": embeds,
            "prompt_attention_mask": mask,
            "negative_prompt_embeds": torch.zeros_like(embeds),
            "negative_prompt_attention_mask": mask,
            "height": 64,
            "width": 64,
            "generator": torch.Generator().manual_seed(0),
        }
    embeds = torch.randn(1, TEXT_TOKENS, 32, generator=generator)
    pooled = torch.randn(1, 32, generator=generator)
    return {
        "prompt_embeds": embeds,
        "pooled_prompt_embeds": pooled,
        "negative_prompt_embeds": torch.zeros_like(embeds),
        "negative_pooled_prompt_embeds": torch.zeros_like(pooled),
        "true_cfg_scale": 2.0,  # two transformer calls per step
        "height": 8,
        "width": 8,
    }


def run(pipe, steps: int, seed: int = 0) -> torch.Tensor:
    """The final latents of one generation from fixed noise. The global RNG is seeded too: the
    "random" token selector draws from it."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    latents = []
    decode = pipe.vae.decode  # DiTPipeline always decodes: take the latents it decodes
    pipe.vae.decode = lambda z, *args, **kwargs: latents.append(z.clone()) or decode(z, *args, **kwargs)
    try:
        out = pipe(**prompt_inputs(pipe), num_inference_steps=steps, generator=generator, output_type="latent")
    finally:
        del pipe.vae.decode
    return latents[0] if latents else out[0]
