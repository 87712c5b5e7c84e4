"""Train the three digit models and write their weights: ``python -m benchmarks.train``.

Deterministic for a given torch build and thread count (fixed seeds, one generator per model); the three models
train in parallel processes, one thread each. The diffusion models train progressively, as PixArt-α does: on the
native 8×8 digits (16 tokens, cheap), at 16×16 (64 tokens), then on the 32×32 images they serve (256 tokens);
diffusers' sin-cos position embedding is defined on the same coordinate range at every size. Epsilon prediction
on ``NOISE_SCHEDULE``, AdamW; the EMA of the weights over the last size's steps is saved. The DiT drops 10% of
class labels itself in training mode (diffusers' ``LabelEmbedding``); the PixArt model's captions are dropped to
the null caption at the same rate, so classifier-free guidance works for both.
"""

from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiTTransformer2DModel
from safetensors.torch import save_file
from tqdm.auto import tqdm

from benchmarks.digits import (
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
from benchmarks.metrics import class_accuracy

SEED = 0
CLASSIFIER_EPOCHS = 12
CLASSIFIER_BATCH = 64
# (image size, steps, batch) per stage
DIT_STAGES = ((NATIVE_SIZE, 1000, 128), (2 * NATIVE_SIZE, 600, 128), (IMAGE_SIZE, 400, 64))
# Conditioning through cross-attention is learned more slowly than DiT's adaLN class embedding: more cheap 8×8 steps.
PIXART_STAGES = ((NATIVE_SIZE, 1500, 128), (2 * NATIVE_SIZE, 500, 128), (IMAGE_SIZE, 250, 64))
LEARNING_RATE = 2e-3
WARMUP_STEPS = 50
EMA_DECAY = 0.999
CAPTION_DROPOUT = 0.1
LOSS_WINDOW = 50  # final loss = mean over the last steps
CHECK_SAMPLES = 64
CHECK_STEPS = 10
MODELS = ("classifier", "dit", "pixart")
BENCH_STEPS = {"dit": 50, "pixart": 20}  # the benchmark's sampler settings


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift by up to one pixel and add a little noise, so the classifier also judges imperfect samples."""
    dx, dy = torch.randint(-1, 2, (2,), generator=generator).tolist()
    noise_level = 0.2 * torch.rand((), generator=generator)
    return images.roll((dy, dx), dims=(2, 3)) + noise_level * torch.randn(images.shape, generator=generator)


def train_classifier(position: int = 0) -> tuple[DigitClassifier, float]:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    images, labels = real_digits(split="train")
    model = DigitClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    steps_per_epoch = len(images) // CLASSIFIER_BATCH
    losses = []
    for _ in tqdm(range(CLASSIFIER_EPOCHS), desc="classifier", position=position):
        order = torch.randperm(len(images), generator=generator)
        for batch in order[: steps_per_epoch * CLASSIFIER_BATCH].view(steps_per_epoch, -1):
            loss = F.cross_entropy(model(_augment(images[batch], generator)), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return model.eval(), sum(losses[-steps_per_epoch:]) / steps_per_epoch


def train_diffusion(name: str, model: nn.Module, predict, stages, position: int = 0) -> tuple[nn.Module, float]:
    """``predict(model, noisy, timesteps, images, labels, generator) -> noise prediction``."""
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    noise_schedule = DDPMScheduler(**NOISE_SCHEDULE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    total = sum(steps for _, steps, _ in stages)
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then cosine decay to 0
        optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * step / total))
    )
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    model.train()
    losses = []
    for size, steps, batch_size in stages:
        images, labels = real_digits(size=size, split="train")
        updates = 0  # the EMA warms up again at each size: it must not average in weights fit to a smaller size
        progress = tqdm(range(steps), desc=f"{name} {size}x{size}", position=position)
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
    """Accuracy of the classifier on CFG samples of each diffusion model (labels/captions of test digits), with
    ``CHECK_STEPS`` steps and with the benchmark's step counts."""
    classifier = load_classifier()
    images, labels = real_digits(split="test")
    images, labels = images[:CHECK_SAMPLES], labels[:CHECK_SAMPLES]
    captions = caption_tokens(labels, attribute_bins(images))
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(SEED))
    dit, pixart = load_dit(), load_pixart()
    accuracies = {}
    for steps in (CHECK_STEPS, BENCH_STEPS["dit"]):
        accuracies[f"dit {steps} steps"] = class_accuracy(classifier, sample_dit(dit, labels, noise, steps), labels)
    for steps in (CHECK_STEPS, BENCH_STEPS["pixart"]):
        samples = sample_pixart(pixart, captions, noise, steps)
        accuracies[f"pixart {steps} steps"] = class_accuracy(classifier, samples, labels)
    return accuracies


def train_one(name: str, threads: int, position: int) -> tuple[str, float, float]:
    """Train one model and save its weights; returns (name, final loss, wall seconds). Runs in a worker process."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    torch.manual_seed(SEED)  # the initial weights must not depend on which models ran before
    if name == "classifier":
        model, loss = train_classifier(position)
        save(model, name, epochs=CLASSIFIER_EPOCHS)
    else:
        make, predict, stages = {
            "dit": (lambda: DiTTransformer2DModel(**DIT_CONFIG), predict_dit, DIT_STAGES),
            "pixart": (PixArtCaptioned, predict_pixart, PIXART_STAGES),
        }[name]
        model, loss = train_diffusion(name, make(), predict, stages, position)
        save(model, name, stages=stages, ema_decay=EMA_DECAY)
    return name, loss, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="models trained at once, in processes (default 2)")
    # One thread per job: the committed weights were made so, and at this width a second thread mostly spins.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per job (default 1)")
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS), help="which to train (each has its own seed)"
    )
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {args.jobs} jobs of {args.threads} thread(s)")

    start = time.perf_counter()
    # spawn: a forked child would inherit the parent's OpenMP state.
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_one, name, args.threads, i) for i, name in enumerate(args.models)]
        results = [future.result() for future in futures]
    wall = time.perf_counter() - start

    print()
    for name, loss, seconds in results:
        print(f"{name}: final loss {loss:.4f} (mean over the last steps), {seconds:.0f} s")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"training time: {wall:.0f} s wall for all; load average {load}")
    torch.set_num_threads(args.jobs * args.threads)
    test_images, test_labels = real_digits(split="test")
    print(f"classifier held-out accuracy {class_accuracy(load_classifier(), test_images, test_labels):.3f}")
    accuracies = ", ".join(f"{k} {v:.3f}" for k, v in check_samples().items())
    print(f"CFG samples classified correctly: {accuracies}")


if __name__ == "__main__":
    main()
