
import numpy as np
import pytest
import torch

from semsam.config import MODEL_CONFIGS
from semsam.training.config import load_train_config
from semsam.training.trainer import train

from semsam import SemanticSam

from helpers import MICRO, SMALL_SWIN, synthetic_config


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


@pytest.fixture(scope="session")
def micro_labelled_model(tmp_path_factory):
    """A micro model whose object/part heads learned the synthetic scenes' names: 300 steps on 400 scenes at
    64 px (about 35 CPU seconds), shared by the tests that need trained heads."""
    folder = tmp_path_factory.mktemp("micro")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(MODEL_CONFIGS, "micro", MICRO)
        config = load_train_config(synthetic_config(
            folder, steps=300, length=400, model="micro", prompts_per_image=16, lr=2e-3, warmup_steps=10,
            mask_prompt_prob=0.0, log_every=50,
        ))
        return train(config).eval()
