"""Quality metrics on inputs whose answer is known, and their invariants over random inputs."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.metrics import (
    CHUNK,
    class_accuracy,
    classifier_features,
    frechet_distance,
    frechet_noise,
    psnr,
    relative_l2,
)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_psnr_of_identical_images_is_infinite():
    images = randn(4, 1, 16, 16)
    assert psnr(images, images.clone()) == math.inf


@pytest.mark.parametrize("delta", [0.01, 0.1, 0.5])
def test_psnr_of_a_constant_offset(delta):
    images = randn(3, 1, 16, 16).clamp(-1, 1)
    assert psnr(images + delta, images) == pytest.approx(10 * math.log10(2.0**2 / delta**2))
    assert psnr(images + delta, images, data_range=1.0) == pytest.approx(10 * math.log10(1 / delta**2))


def test_psnr_averages_per_image():
    reference = torch.zeros(2, 1, 4, 4)
    noisy = reference + torch.tensor([0.1, 0.2]).view(2, 1, 1, 1)
    expected = (10 * math.log10(4 / 0.01) + 10 * math.log10(4 / 0.04)) / 2
    assert psnr(noisy, reference) == pytest.approx(expected)


def test_relative_l2_known_values():
    reference = randn(5, 1, 8, 8)
    assert relative_l2(1.5 * reference, reference) == pytest.approx(0.5)
    assert relative_l2(reference, reference) == 0.0
    with pytest.raises(ValueError, match="all zeros"):
        relative_l2(reference, torch.zeros_like(reference))
    with pytest.raises(ValueError, match="same shape"):
        psnr(reference, reference[:2])


def test_frechet_of_a_set_with_itself_is_zero():
    features = randn(300, 16)
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)


def test_frechet_noise_shrinks_with_the_subset_and_vanishes_for_the_whole_set():
    features = randn(400, 8)
    small, large = frechet_noise(features, 40, sets=5), frechet_noise(features, 200, sets=5)
    assert len(small) == 5 and min(small) > 0
    assert sum(large) < sum(small)
    assert max(frechet_noise(features, 400, sets=2)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="subset"):
        frechet_noise(features, 1)


def test_frechet_of_a_mean_shift_is_its_squared_length():
    features = randn(300, 8)
    shift = torch.arange(8, dtype=torch.float32) / 4
    assert frechet_distance(features, features + shift) == pytest.approx(shift.square().sum().item(), rel=1e-6)
    assert frechet_distance(features, features + 2 * shift) > frechet_distance(features, features + shift)


def test_frechet_of_a_scaled_set():
    # b = 2a: |μa|² + tr(Σa + 4Σa - 2·2Σa) = |μa|² + tr(Σa)
    features = randn(200, 6) + 1
    expected = features.double().mean(0).square().sum() + torch.cov(features.double().T).trace()
    assert frechet_distance(features, 2 * features) == pytest.approx(expected.item(), rel=1e-6)


def scipy_frechet(a, b):
    a, b = a.double().numpy(), b.double().numpy()
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return ((a.mean(0) - b.mean(0)) ** 2).sum() + (cov_a + cov_b - 2 * root).trace()


feature_pairs = st.tuples(st.integers(2, 60), st.integers(2, 60), st.integers(1, 12), st.integers(0, 2**16))


@given(feature_pairs, st.floats(0.1, 3.0))
def test_frechet_invariants(sizes, scale):
    n_a, n_b, dim, seed = sizes
    a, b = randn(n_a, dim, seed=seed), scale * randn(n_b, dim, seed=seed + 1) + 0.5
    forward, backward = frechet_distance(a, b), frechet_distance(b, a)
    assert forward >= 0
    assert forward == pytest.approx(backward, rel=1e-6, abs=1e-8)
    if n_a > dim and n_b > dim:  # full-rank covariances: scipy's sqrtm is well defined
        assert forward == pytest.approx(scipy_frechet(a, b), rel=1e-5, abs=1e-8)


@given(st.integers(1, 4), st.integers(0, 2**16))
def test_pixel_metric_invariants(batch, seed):
    a, b = randn(batch, 1, 6, 6, seed=seed), randn(batch, 1, 6, 6, seed=seed + 1)
    assert psnr(a, b) == pytest.approx(psnr(b, a))
    assert relative_l2(a, b) >= 0
    assert psnr(a, b) < psnr(a, 0.5 * a + 0.5 * b)  # halving the error gains 20·log10(2) dB per image
    assert psnr(a, 0.5 * a + 0.5 * b) - psnr(a, b) == pytest.approx(20 * math.log10(2))


def test_frechet_rejects_mismatched_sets():
    with pytest.raises(ValueError, match="equal D"):
        frechet_distance(randn(10, 3), randn(10, 4))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(randn(1, 3), randn(10, 3))


class Lookup(torch.nn.Module):
    """A 'classifier' whose features are the flattened image and whose logits pick pixel 0's value as the class."""

    def features(self, x):
        return x.flatten(1)

    def forward(self, x):
        return torch.nn.functional.one_hot(x.flatten(1)[:, 0].long(), 10).float()


def test_class_accuracy_and_features_in_chunks():
    labels = torch.arange(CHUNK + 44) % 10
    images = labels.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    wrong = labels.clone()
    wrong[:75] = (wrong[:75] + 1) % 10
    assert class_accuracy(Lookup(), images, labels) == 1.0
    assert class_accuracy(Lookup(), images, wrong) == pytest.approx(1 - 75 / len(labels))
    assert torch.equal(classifier_features(Lookup(), images), images.flatten(1))
