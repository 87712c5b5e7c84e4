"""Handwritten digits as a diffusion data set, the three small models trained on it, and their samplers.

Images are scikit-learn's 8×8 digits upscaled to 32×32 (1 channel, values in [-1, 1]); with patch size 2 the
diffusion transformers see 256 tokens. Pixel-space diffusion, epsilon prediction, diffusers' default linear
noise schedule (``NOISE_SCHEDULE``). Weights live in ``weights/`` and are made by ``python -m benchmarks.train``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiTTransformer2DModel, DPMSolverMultistepScheduler, PixArtTransformer2DModel
from safetensors.torch import load_file
from tqdm.auto import tqdm

WEIGHTS_DIR = Path(__file__).parent / "weights"
IMAGE_SIZE = 32
PATCH_SIZE = 2
NATIVE_SIZE = 8
NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES  # DiT's label embedding reserves index num_classes for "no class"
TEST_FRACTION = 0.2

# Caption = [digit, thickness bin, shift-x bin, shift-y bin]; each field has its own token range.
ATTRIBUTES = ("thickness", "shift_x", "shift_y")
ATTRIBUTE_BINS = 3
CAPTION_LENGTH = 1 + len(ATTRIBUTES)
NULL_TOKEN = NUM_CLASSES + ATTRIBUTE_BINS * len(ATTRIBUTES)
CAPTION_VOCAB = NULL_TOKEN + 1

NOISE_SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
# "trailing" starts sampling at t=999, which matters with 10 steps on the linear schedule.
SAMPLING = {**NOISE_SCHEDULE, "timestep_spacing": "trailing"}
DIT_GUIDANCE = 1.5  # DiT-XL/2's FID setting
PIXART_GUIDANCE = 3.0

WIDTH = {"num_attention_heads": 4, "attention_head_dim": 16}
DIT_CONFIG = {
    **WIDTH,
    "in_channels": 1,
    "out_channels": 1,
    "num_layers": 4,
    "sample_size": IMAGE_SIZE,
    "patch_size": PATCH_SIZE,
    "num_embeds_ada_norm": NUM_CLASSES,
}
CAPTION_CHANNELS = 32
PIXART_CONFIG = {
    **WIDTH,
    "in_channels": 1,
    "out_channels": 1,
    "num_layers": 4,
    "cross_attention_dim": WIDTH["num_attention_heads"] * WIDTH["attention_head_dim"],
    "sample_size": IMAGE_SIZE,
    "patch_size": PATCH_SIZE,
    "caption_channels": CAPTION_CHANNELS,
    "norm_type": "ada_norm_single",
    "use_additional_conditions": False,
}


@functools.cache
def _split_indices() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    train, test = train_test_split(range(len(labels)), test_size=TEST_FRACTION, random_state=0, stratify=labels)
    return torch.tensor(sorted(train)), torch.tensor(sorted(test))


def real_digits(size: int = IMAGE_SIZE, split: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as (images (N, 1, size, size) in [-1, 1], labels (N,)); split: all, train or test."""
    from sklearn.datasets import load_digits

    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # pixel values are 0..16
    labels = torch.tensor(data.target, dtype=torch.long)
    if size != NATIVE_SIZE:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    if split != "all":
        index = _split_indices()[0 if split == "train" else 1]
        images, labels = images[index], labels[index]
    return images, labels


def digit_attributes(images: torch.Tensor) -> torch.Tensor:
    """(B, 3) float: ink mass (mean ink in [0, 1]) and the ink's centre-of-mass offset from the image centre in
    x and y, as a fraction of the image side. Independent of the resolution."""
    ink = (images[:, 0].clamp(-1, 1) + 1) / 2
    size = ink.shape[-1]
    coords = (torch.arange(size, dtype=ink.dtype) + 0.5) / size - 0.5
    mass = ink.sum(dim=(1, 2)).clamp_min(1e-6)
    shift_x = (ink.sum(dim=1) * coords).sum(dim=1) / mass
    shift_y = (ink.sum(dim=2) * coords).sum(dim=1) / mass
    return torch.stack([ink.mean(dim=(1, 2)), shift_x, shift_y], dim=1)


@functools.cache
def _attribute_edges() -> torch.Tensor:
    """(3, ATTRIBUTE_BINS - 1) bin edges: the quantiles of each attribute over the real digits."""
    attributes = digit_attributes(real_digits()[0])
    quantiles = torch.arange(1, ATTRIBUTE_BINS, dtype=torch.float32) / ATTRIBUTE_BINS
    return torch.quantile(attributes, quantiles, dim=0).T.contiguous()


def attribute_bins(images: torch.Tensor) -> torch.Tensor:
    """(B, 3) long in [0, ATTRIBUTE_BINS): each attribute of ``digit_attributes`` binned at the real set's quantiles."""
    per_attribute = digit_attributes(images).T.contiguous()
    return torch.stack([torch.bucketize(values, edges) for values, edges in zip(per_attribute, _attribute_edges())], 1)


def caption_tokens(labels: torch.Tensor, bins: torch.Tensor | None = None) -> torch.Tensor:
    """(B, CAPTION_LENGTH) long caption [digit, thickness, shift_x, shift_y]; ``bins`` (B, 3) from
    ``attribute_bins``, or None for the middle bin of every attribute."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.dim() != 1 or ((labels < 0) | (labels >= NUM_CLASSES)).any():
        raise ValueError(f"labels must be a 1-D tensor of digits in [0, {NUM_CLASSES})")
    if bins is None:
        bins = torch.full((len(labels), len(ATTRIBUTES)), ATTRIBUTE_BINS // 2, dtype=torch.long)
    if bins.shape != (len(labels), len(ATTRIBUTES)) or ((bins < 0) | (bins >= ATTRIBUTE_BINS)).any():
        raise ValueError(f"bins must be (B, {len(ATTRIBUTES)}) with values in [0, {ATTRIBUTE_BINS})")
    offsets = NUM_CLASSES + ATTRIBUTE_BINS * torch.arange(len(ATTRIBUTES))
    return torch.cat([labels[:, None], bins + offsets], dim=1)


def image_captions(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Captions describing real images: their labels and binned attributes."""
    return caption_tokens(labels, attribute_bins(images))


def null_captions(batch: int) -> torch.Tensor:
    return torch.full((batch, CAPTION_LENGTH), NULL_TOKEN, dtype=torch.long)


class PixArtCaptioned(nn.Module):
    """A PixArt-α transformer (adaLN-single, self-attention, cross-attention, MLP) that cross-attends to
    learned embeddings of the caption tokens. ``forward(sample, timestep, captions) -> noise prediction``."""

    def __init__(self):
        super().__init__()
        self.caption_embedding = nn.Embedding(CAPTION_VOCAB, CAPTION_CHANNELS)
        self.transformer = PixArtTransformer2DModel(**PIXART_CONFIG)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        return self.transformer(
            sample,
            encoder_hidden_states=self.caption_embedding(captions),
            timestep=timestep,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
            return_dict=False,
        )[0]


class DigitClassifier(nn.Module):
    """Small CNN on 32×32 digits; ``features`` (64-d, before the last layer) feed the Fréchet distance."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * (IMAGE_SIZE // 8) ** 2, 64),
            nn.ReLU(),
        )
        self.head = nn.Linear(64, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def _load(model: nn.Module, name: str) -> nn.Module:
    path = weights_path(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m benchmarks.train` to make it")
    model.load_state_dict(load_file(path))
    return model.float().eval()


def load_dit() -> DiTTransformer2DModel:
    return _load(DiTTransformer2DModel(**DIT_CONFIG), "dit")


def load_pixart() -> PixArtCaptioned:
    return _load(PixArtCaptioned(), "pixart")


def load_classifier() -> DigitClassifier:
    return _load(DigitClassifier(), "classifier")


def _sample(step_fn, scheduler, noise: torch.Tensor, num_steps: int, guidance_scale: float, progress: bool):
    """Classifier-free guidance with the uncond and cond halves in one batch of 2B, uncond first, as diffusers'
    pipelines do (and FasterCache assumes)."""
    scheduler.set_timesteps(num_steps)
    latents = noise * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in tqdm(scheduler.timesteps, disable=not progress, desc="sampling", leave=False):
            both = scheduler.scale_model_input(torch.cat([latents, latents]), t)
            uncond, cond = step_fn(both, t.expand(len(both))).chunk(2)
            guided = uncond + guidance_scale * (cond - uncond)
            latents = scheduler.step(guided, t, latents).prev_sample
    return latents.clamp(-1, 1)


def sample_dit(
    model,
    labels: torch.Tensor,
    noise: torch.Tensor,
    num_steps: int = 50,
    guidance_scale: float = DIT_GUIDANCE,
    progress: bool = False,
) -> torch.Tensor:
    """DDIM samples (B, 1, 32, 32) of the class-conditional DiT (or a compiled one) from ``noise``."""
    class_labels = torch.cat([torch.full_like(labels, NULL_CLASS), labels])

    def step(x, t):
        return model(x, timestep=t, class_labels=class_labels, return_dict=False)[0]

    # No clipping of the predicted clean sample, as for DiT's latents: clipping it without its noise estimate (DDIM's
    # default) leaves speckle that builds up over 50 steps.
    scheduler = DDIMScheduler(**SAMPLING, clip_sample=False)
    return _sample(step, scheduler, noise, num_steps, guidance_scale, progress)


def sample_pixart(
    model,
    captions: torch.Tensor,
    noise: torch.Tensor,
    num_steps: int = 20,
    guidance_scale: float = PIXART_GUIDANCE,
    progress: bool = False,
) -> torch.Tensor:
    """DPM-Solver++ samples of ``PixArtCaptioned`` (or a compiled one, or any callable with its signature)."""
    both_captions = torch.cat([null_captions(len(captions)), captions])

    def step(x, t):
        return model(x, t, both_captions)

    return _sample(step, DPMSolverMultistepScheduler(**SAMPLING), noise, num_steps, guidance_scale, progress)
