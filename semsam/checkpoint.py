"""Safetensors checkpoints that carry their model config and what the semantic heads were trained on."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from semsam.config import SemanticInfo, SemanticSamConfig
from semsam.io import write_atomic

FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose tensors do not match the model."""


def model_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The model's saved tensors, each once: a module reachable under several names keeps its first name."""
    saved = set(model.state_dict().keys())
    named = list(model.named_parameters()) + list(model.named_buffers())
    return {name: tensor for name, tensor in named if name in saved}


def save_checkpoint(path: str | Path, model: nn.Module, config: SemanticSamConfig, semantic: SemanticInfo) -> None:
    """Writes the model atomically: a kill mid-write leaves any earlier file intact."""
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model_tensors(model).items()}
    metadata = {
        "format": "semsam",
        "format_version": FORMAT_VERSION,
        "config": json.dumps(config.to_dict()),
        "semantic": json.dumps(asdict(semantic)),
    }
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], SemanticSamConfig, SemanticInfo]:
    """Reads tensors, config and semantic info from a semsam safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error
    if metadata.get("format") != "semsam" or "config" not in metadata:
        raise CheckpointError(f"{path} has no semsam metadata (config); was it written by semsam.save_checkpoint?")
    try:
        config = SemanticSamConfig.from_dict(json.loads(metadata["config"]))
        semantic = SemanticInfo(**json.loads(metadata.get("semantic", "{}")))
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path} has an invalid config: {error}") from error
    return tensors, config, semantic


def load_tensors(model: nn.Module, tensors: dict[str, Tensor], source: str) -> None:
    """Copies tensors into the model after checking every key and shape; never loads partially.

    Raises:
        CheckpointError: naming the missing and unexpected keys and the shape mismatches.
    """
    expected = model_tensors(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = sorted(
        f"{name}: checkpoint {tuple(tensors[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in set(expected) & set(tensors)
        if tensors[name].shape != expected[name].shape
    )
    if missing or unexpected or mismatched:
        lines = [f"checkpoint {source} does not match the model config:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
            if items:
                shown = ", ".join(items[:10]) + (f", ... ({len(items) - 10} more)" if len(items) > 10 else "")
                lines.append(f"  {len(items)} {title}: {shown}")
        raise CheckpointError("\n".join(lines))
    with torch.no_grad():
        for name, tensor in tensors.items():
            expected[name].copy_(tensor)
