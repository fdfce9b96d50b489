"""Building models from the registry and loading checkpoints: the embedded default or a file."""

from __future__ import annotations

from pathlib import Path

import torch

from semsam.checkpoint import CheckpointError, load_tensors, read_checkpoint
from semsam.config import DEFAULT_MODEL, MODEL_CONFIGS, SemanticInfo
from semsam.modeling import SemanticSam

ASSETS = Path(__file__).resolve().parent / "assets"
EMBEDDED_CHECKPOINTS = {DEFAULT_MODEL: ASSETS / f"{DEFAULT_MODEL}.safetensors"}


def build_model(name: str) -> SemanticSam:
    """A randomly initialised model of a registered size."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODEL_CONFIGS))}")
    return SemanticSam(config=MODEL_CONFIGS[name])


def load_model(name: str | None = None, *, checkpoint: str | Path | None = None, device: str = "cpu") -> SemanticSam:
    """Loads a model ready for inference.

    Args:
        name: a registered model (`semsam.MODEL_CONFIGS`); None means the checkpoint's own config, or the
            embedded default when no checkpoint is given either.
        checkpoint: a semsam safetensors file; None loads the model's embedded checkpoint.
        device: where to put the model.

    Returns:
        The model in eval mode.

    Raises:
        ValueError: unknown name, or no checkpoint available for it.
        CheckpointError: unreadable file, or tensors that do not match the config.
    """
    if name is not None and name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODEL_CONFIGS))}")
    if checkpoint is None:
        name = name or DEFAULT_MODEL
        if name not in EMBEDDED_CHECKPOINTS:
            raise ValueError(f"model {name!r} has no embedded weights: pass checkpoint=PATH to a semsam checkpoint")
        checkpoint = EMBEDDED_CHECKPOINTS[name]
        if not checkpoint.is_file():
            raise CheckpointError(f"the embedded checkpoint {checkpoint} is missing: reinstall semsam")
    tensors, file_config, semantic = read_checkpoint(checkpoint)
    config = MODEL_CONFIGS[name] if name is not None else file_config
    if name is not None and file_config != config:
        differing = [key for key, value in config.to_dict().items() if file_config.to_dict()[key] != value]
        raise CheckpointError(
            f"checkpoint {checkpoint} was written for a different config than {name!r} (differs in: "
            f"{', '.join(differing)}); load it with load_model(checkpoint=PATH) to use its own config"
        )
    model = SemanticSam(config=config, semantic=semantic)
    load_tensors(model, tensors, str(checkpoint))
    return model.to(torch.device(device)).eval()


__all__ = ["CheckpointError", "SemanticInfo", "build_model", "load_model"]
