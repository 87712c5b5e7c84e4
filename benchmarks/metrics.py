"""Quality metrics: cached samples against the uncached ones from the same noise (PSNR, relative L2), and
generated samples as a distribution (class accuracy, Fréchet distance in the digit classifier's features)."""

from __future__ import annotations

import torch
import torch.nn as nn

CHUNK = 256


def _per_image_sq_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.shape != b.shape or a.dim() < 2:
        raise ValueError(f"need two image batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return (a.double() - b.double()).flatten(1).square()


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> float:
    """Mean over images of the per-image PSNR in dB; inf when every image is identical."""
    mse = _per_image_sq_error(a, b).mean(dim=1)
    return (10 * torch.log10(data_range**2 / mse)).mean().item()  # mse 0 gives inf


def relative_l2(a: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over images of ||a - reference|| / ||reference||."""
    norms = reference.double().flatten(1).norm(dim=1)
    if (norms == 0).any():
        raise ValueError("relative_l2: a reference image is all zeros, its relative error is undefined")
    return (_per_image_sq_error(a, reference).sum(dim=1).sqrt() / norms).mean().item()


@torch.no_grad()
def classifier_features(classifier: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N, D) penultimate features, computed in chunks."""
    return torch.cat([classifier.features(chunk) for chunk in images.split(CHUNK)])


@torch.no_grad()
def class_accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` that ``classifier`` assigns to ``labels``."""
    predicted = torch.cat([classifier(chunk).argmax(dim=1) for chunk in images.split(CHUNK)])
    return (predicted == labels).double().mean().item()


def _gaussian(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = features.double()
    dim = features.shape[1]
    return features.mean(dim=0), torch.cov(features.T).reshape(dim, dim)  # cov of one feature is 0-d


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fit to two feature sets (N, D):
    |μa - μb|² + tr(Σa + Σb - 2 (Σa^½ Σb Σa^½)^½), computed by symmetric eigendecompositions in float64."""
    if features_a.dim() != 2 or features_b.dim() != 2 or features_a.shape[1] != features_b.shape[1]:
        shapes = f"{tuple(features_a.shape)} and {tuple(features_b.shape)}"
        raise ValueError(f"need (N, D) feature sets of equal D, got {shapes}")
    if min(len(features_a), len(features_b)) < 2:
        raise ValueError("need at least 2 samples per set to fit a covariance")
    mean_a, cov_a = _gaussian(features_a)
    mean_b, cov_b = _gaussian(features_b)
    root_a = _sqrt_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(distance.item(), 0.0)  # rounding can dip below 0; NaN features stay NaN


def frechet_noise(features: torch.Tensor, subset: int, sets: int = 10, seed: int = 0) -> list[float]:
    """Fréchet distances of ``sets`` random subsets of ``subset`` rows of ``features`` to all of them: how far
    FD moves from sampling alone, for sets of that size drawn from the reference distribution itself."""
    if not 2 <= subset <= len(features):
        raise ValueError(f"subset must be between 2 and {len(features)}, got {subset}")
    generator = torch.Generator().manual_seed(seed)
    picks = [torch.randperm(len(features), generator=generator)[:subset] for _ in range(sets)]
    return [frechet_distance(features[pick], features) for pick in picks]
