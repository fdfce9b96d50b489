
import numpy as np
import pytest
import torch

from semsam import SemanticSam

from helpers import SMALL_SWIN


@pytest.fixture(scope="session")
def small_config():
    """A small Swin model (the previous default's architecture) at a small input size, so tests run fast."""
    return SMALL_SWIN


@pytest.fixture(scope="session")
def small_model(small_config):
    torch.manual_seed(0)
    return SemanticSam(config=small_config).eval()


@pytest.fixture(scope="session")
def scene():
    """A 96x128 image with a square inside a larger rectangle on a noisy background."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 40, size=(96, 128, 3), dtype=np.uint8)
    image[20:80, 30:110] = (200, 60, 60)
    image[35:60, 50:80] = (40, 200, 40)
    return image
