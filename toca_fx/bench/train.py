"""Train the three digit models and write their weights: ``python -m toca_fx.bench.train``.

Deterministic for a given torch build and thread count (fixed seeds, one generator per model). The diffusion
models train progressively, as PixArt-α does: first on the native 8×8 digits (64 tokens, cheap), then on the
16×16 images they serve (256 tokens); diffusers' sin-cos position embedding is defined on the same coordinate
range at both sizes. Epsilon prediction on ``NOISE_SCHEDULE``, AdamW, EMA weights are saved. The DiT drops
10% of class labels itself in training mode (diffusers' ``LabelEmbedding``); the PixArt model's captions are
dropped to the null caption at the same rate, so classifier-free guidance works for both.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiTTransformer2DModel
from safetensors.torch import save_file
from tqdm.auto import tqdm

from toca_fx.bench.digits import (
    DIT_CONFIG,
    IMAGE_SIZE,
    NATIVE_SIZE,
    NOISE_SCHEDULE,
    WEIGHTS_DIR,
    DigitClassifier,
    PixArtCaptioned,
    attribute_bins,
    caption_tokens,
    load_classifier,
    load_dit,
    load_pixart,
    null_captions,
    real_digits,
    sample_dit,
    sample_pixart,
    weights_path,
)
from toca_fx.bench.metrics import class_accuracy

SEED = 0
CLASSIFIER_EPOCHS = 12
CLASSIFIER_BATCH = 64
# (image size, steps, batch) per stage
DIFFUSION_STAGES = ((NATIVE_SIZE, 400, 128), (IMAGE_SIZE, 150, 64))
LEARNING_RATE = 2e-3
WARMUP_STEPS = 50
EMA_DECAY = 0.999
CAPTION_DROPOUT = 0.1
LOSS_WINDOW = 50  # final loss = mean over the last steps
CHECK_SAMPLES = 64
CHECK_STEPS = 10


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift by up to one pixel and add a little noise, so the classifier also judges imperfect samples."""
    dx, dy = torch.randint(-1, 2, (2,), generator=generator).tolist()
    noise_level = 0.2 * torch.rand((), generator=generator)
    return images.roll((dy, dx), dims=(2, 3)) + noise_level * torch.randn(images.shape, generator=generator)


def train_classifier() -> tuple[DigitClassifier, float]:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    images, labels = real_digits(split="train")
    model = DigitClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    steps_per_epoch = len(images) // CLASSIFIER_BATCH
    losses = []
    for _ in tqdm(range(CLASSIFIER_EPOCHS), desc="classifier"):
        order = torch.randperm(len(images), generator=generator)
        for batch in order[: steps_per_epoch * CLASSIFIER_BATCH].view(steps_per_epoch, -1):
            loss = F.cross_entropy(model(_augment(images[batch], generator)), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return model.eval(), sum(losses[-steps_per_epoch:]) / steps_per_epoch


def train_diffusion(name: str, model: nn.Module, predict) -> tuple[nn.Module, float]:
    """``predict(model, noisy, timesteps, images, labels, generator) -> noise prediction``."""
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    noise_schedule = DDPMScheduler(**NOISE_SCHEDULE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    total = sum(steps for _, steps, _ in DIFFUSION_STAGES)
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then cosine decay to 0
        optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * step / total))
    )
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    model.train()
    losses, updates = [], 0
    for size, steps, batch_size in DIFFUSION_STAGES:
        images, labels = real_digits(size=size, split="train")
        progress = tqdm(range(steps), desc=f"{name} {size}x{size}")
        for _ in progress:
            batch = torch.randint(len(images), (batch_size,), generator=generator)
            clean = images[batch]
            noise = torch.randn(clean.shape, generator=generator)
            timesteps = torch.randint(NOISE_SCHEDULE["num_train_timesteps"], (batch_size,), generator=generator)
            noisy = noise_schedule.add_noise(clean, noise, timesteps)
            loss = F.mse_loss(predict(model, noisy, timesteps, clean, labels[batch], generator), noise)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            updates += 1
            decay = min(EMA_DECAY, (1 + updates) / (10 + updates))
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
            losses.append(loss.item())
            progress.set_postfix(loss=f"{sum(losses[-LOSS_WINDOW:]) / len(losses[-LOSS_WINDOW:]):.4f}")
    return ema, sum(losses[-LOSS_WINDOW:]) / LOSS_WINDOW


def predict_dit(model, noisy, timesteps, images, labels, generator):
    return model(noisy, timestep=timesteps, class_labels=labels).sample


def predict_pixart(model, noisy, timesteps, images, labels, generator):
    captions = caption_tokens(labels, attribute_bins(images))
    dropped = torch.rand(len(labels), generator=generator) < CAPTION_DROPOUT
    captions = torch.where(dropped[:, None], null_captions(len(labels)), captions)
    return model(noisy, timesteps, captions)


def save(model: nn.Module, name: str, **metadata) -> None:
    WEIGHTS_DIR.mkdir(exist_ok=True)
    info = {"torch": torch.__version__, "seed": str(SEED), **{k: str(v) for k, v in metadata.items()}}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights_path(name), metadata=info)


def check_samples() -> dict[str, float]:
    """Accuracy of the classifier on 10-step CFG samples of each diffusion model (labels/captions of test digits)."""
    classifier = load_classifier()
    images, labels = real_digits(split="test")
    images, labels = images[:CHECK_SAMPLES], labels[:CHECK_SAMPLES]
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(SEED))
    return {
        "dit": class_accuracy(classifier, sample_dit(load_dit(), labels, noise, num_steps=CHECK_STEPS), labels),
        "pixart": class_accuracy(
            classifier,
            sample_pixart(load_pixart(), caption_tokens(labels, attribute_bins(images)), noise, num_steps=CHECK_STEPS),
            labels,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # One thread: the committed weights were made so, and on a shared 2-core machine a second thread mostly spins.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stages = " + ".join(f"{steps} steps of {batch} at {size}x{size}" for size, steps, batch in DIFFUSION_STAGES)
    print(f"torch {torch.__version__}, {args.threads} threads; diffusion: {stages}")

    timings = {}
    cpu_start = time.process_time()
    start = time.perf_counter()
    classifier, classifier_loss = train_classifier()
    save(classifier, "classifier", epochs=CLASSIFIER_EPOCHS)
    test_images, test_labels = real_digits(split="test")
    accuracy = class_accuracy(classifier, test_images, test_labels)
    timings["classifier"] = time.perf_counter() - start

    results = {}
    for name, model, predict in (
        ("dit", DiTTransformer2DModel(**DIT_CONFIG), predict_dit),
        ("pixart", PixArtCaptioned(), predict_pixart),
    ):
        start = time.perf_counter()
        ema, results[name] = train_diffusion(name, model, predict)
        save(ema, name, stages=DIFFUSION_STAGES, ema_decay=EMA_DECAY)
        timings[name] = time.perf_counter() - start

    print(f"classifier: final loss {classifier_loss:.4f}, held-out accuracy {accuracy:.3f} ({len(test_labels)} digits)")
    for name, loss in results.items():
        print(f"{name}: final loss {loss:.4f} (mean of the last {LOSS_WINDOW} steps)")
    per_model = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    cpu = time.process_time() - cpu_start
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"training time: {per_model}; total {sum(timings.values()):.0f} s wall, {cpu:.0f} s CPU; load average {load}")
    accuracies = ", ".join(f"{k} {v:.3f}" for k, v in check_samples().items())
    print(f"{CHECK_STEPS}-step CFG samples classified correctly: {accuracies}")


if __name__ == "__main__":
    main()
