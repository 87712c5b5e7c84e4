"""The committed digit models: they load, the classifier is accurate, and 10-step guided samples of both
diffusion models are recognised as the digit they were asked for. Captions are deterministic and in range."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.digits import (
    ATTRIBUTE_BINS,
    CAPTION_LENGTH,
    CAPTION_VOCAB,
    IMAGE_SIZE,
    NULL_TOKEN,
    NUM_CLASSES,
    attribute_bins,
    caption_tokens,
    image_captions,
    load_classifier,
    load_dit,
    load_pixart,
    real_digits,
    sample_dit,
    sample_pixart,
)
from benchmarks.metrics import class_accuracy

SAMPLES = 64
STEPS = 10


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


@pytest.fixture(scope="module")
def held_out():
    return real_digits(split="test")


def test_real_digits_shape_range_and_split(held_out):
    images, labels = real_digits()
    assert images.shape == (1797, 1, IMAGE_SIZE, IMAGE_SIZE) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert set(labels.tolist()) == set(range(NUM_CLASSES))
    train = real_digits(split="train")[0]
    assert len(train) + len(held_out[0]) == len(images)
    assert not (train.flatten(1)[:, None] == held_out[0].flatten(1)[None]).all(-1).any()


def test_models_load_in_eval_float32():
    for model in (load_dit(), load_pixart(), load_classifier()):
        assert not model.training
        assert all(p.dtype == torch.float32 for p in model.parameters())


def test_classifier_is_accurate_on_held_out_digits(classifier, held_out):
    assert class_accuracy(classifier, *held_out) >= 0.93


def test_dit_ten_step_samples_are_recognised(classifier):
    labels = torch.arange(SAMPLES) % NUM_CLASSES
    noise = torch.randn(SAMPLES, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    images = sample_dit(load_dit(), labels, noise, num_steps=STEPS)
    assert class_accuracy(classifier, images, labels) >= 0.8


def test_pixart_ten_step_samples_are_recognised(classifier, held_out):
    images, labels = held_out[0][:SAMPLES], held_out[1][:SAMPLES]
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    samples = sample_pixart(load_pixart(), image_captions(images, labels), noise, num_steps=STEPS)
    assert class_accuracy(classifier, samples, labels) >= 0.8


class Counting(torch.nn.Module):
    """Wraps a model and records the batch size of every call."""

    def __init__(self, model):
        super().__init__()
        self.model, self.batches = model, []

    def forward(self, x, *args, **kwargs):
        self.batches.append(len(x))
        return self.model(x, *args, **kwargs)


def test_samplers_batch_cond_and_uncond_and_accept_a_compiled_model():
    labels = torch.tensor([3, 7])
    noise = torch.randn(2, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    pixart = Counting(load_pixart())
    eager = sample_pixart(pixart, caption_tokens(labels), noise, num_steps=3)
    assert pixart.batches == [4, 4, 4]  # one call of batch 2B per step
    compiled = sample_pixart(torch.compile(pixart.model, backend="eager"), caption_tokens(labels), noise, num_steps=3)
    torch.testing.assert_close(compiled, eager)
    dit = Counting(load_dit())
    sample_dit(dit, labels, noise, num_steps=3)
    assert dit.batches == [4, 4, 4]


@given(st.lists(st.integers(0, NUM_CLASSES - 1), min_size=1, max_size=8), st.integers(0, 2**16))
def test_caption_tokens_are_deterministic_and_in_range(digits, seed):
    labels = torch.tensor(digits)
    bins = torch.randint(
        ATTRIBUTE_BINS, (len(digits), CAPTION_LENGTH - 1), generator=torch.Generator().manual_seed(seed)
    )
    captions = caption_tokens(labels, bins)
    assert captions.shape == (len(digits), CAPTION_LENGTH) and captions.dtype == torch.long
    assert torch.equal(captions, caption_tokens(labels.clone(), bins.clone()))
    assert torch.equal(captions[:, 0], labels)
    for field in range(1, CAPTION_LENGTH):  # each attribute has its own token range, below the null token
        low = NUM_CLASSES + ATTRIBUTE_BINS * (field - 1)
        assert ((captions[:, field] >= low) & (captions[:, field] < low + ATTRIBUTE_BINS)).all()
    assert ((captions >= 0) & (captions < NULL_TOKEN) & (captions < CAPTION_VOCAB)).all()


def test_image_captions_use_every_attribute_bin(held_out):
    images, labels = held_out
    bins = attribute_bins(images)
    assert torch.equal(image_captions(images, labels), image_captions(images.clone(), labels))
    for field in range(bins.shape[1]):  # bins are quantiles of the real set, so all are used
        assert set(bins[:, field].tolist()) == set(range(ATTRIBUTE_BINS))
    with pytest.raises(ValueError, match="labels"):
        caption_tokens(torch.tensor([NUM_CLASSES]))
    with pytest.raises(ValueError, match="bins"):
        caption_tokens(torch.tensor([1]), torch.tensor([[0, 0, ATTRIBUTE_BINS]]))
