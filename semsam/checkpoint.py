"""Safetensors checkpoints that carry their model config and what the semantic heads were trained on."""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from semsam.config import ARCHITECTURES, ModelConfig, SemanticInfo, architecture_of, check_config
from semsam.io import write_atomic

# Version 3 keys the pixel decoder's input_proj as the official files do (res3, res4, res5, extra level; version 2
# had res5 first), names semsam's text projection `text_projection` (versions 1-2: `lang_mapper`, the name of an
# official tensor of another shape), and records the inference resize rule (versions 1-2: "long_side").
FORMAT_VERSION = "3"
RENAMES_TO_V3 = {
    "1": {"predictor.lang_mapper": "predictor.text_projection"},
    "2": {"predictor.lang_mapper": "predictor.text_projection",
          "pixel_decoder.input_proj.0.": "pixel_decoder.input_proj.2.",
          "pixel_decoder.input_proj.2.": "pixel_decoder.input_proj.0."},
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose tensors do not match the model."""


def model_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The model's saved tensors, each once: a module reachable under several names keeps its first name."""
    saved = set(model.state_dict().keys())
    named = list(model.named_parameters()) + list(model.named_buffers())
    return {name: tensor for name, tensor in named if name in saved}


def save_checkpoint(path: str | Path, model: nn.Module, config: ModelConfig, semantic: SemanticInfo) -> None:
    """Writes the model atomically: a kill mid-write leaves any earlier file intact."""
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model_tensors(model).items()}
    metadata = {
        "format": "semsam",
        "format_version": FORMAT_VERSION,
        "architecture": architecture_of(config),
        "config": json.dumps(config.to_dict()),
        "semantic": json.dumps(asdict(semantic)),
    }
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], ModelConfig, SemanticInfo]:
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
    architecture = metadata.get("architecture", "semantic_sam")
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"{path} is for an unknown architecture {architecture!r} (known: {sorted(ARCHITECTURES)})")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION and version not in RENAMES_TO_V3:
        raise CheckpointError(f"{path} has format version {version!r}, which this semsam cannot read (it reads 1 to "
                              f"{FORMAT_VERSION}): upgrade semsam")
    try:
        config_dict = json.loads(metadata["config"])
        if version in RENAMES_TO_V3 and architecture == "semantic_sam":
            config_dict.setdefault("resize", "long_side")
        config = ARCHITECTURES[architecture].from_dict(config_dict)
        check_config(config)
        semantic_dict = json.loads(metadata.get("semantic", "{}"))
        if isinstance(semantic_dict, dict) and semantic_dict.pop("iou_calibration", None):
            warnings.warn(f"{path} carries a per-output IoU calibration of an earlier semsam, which is no longer "
                          "applied: its predicted IoUs are the raw head's. Run `semsam calibrate-iou` on it to fit "
                          "a rank head", stacklevel=2)
        semantic = SemanticInfo(**semantic_dict)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path} has an invalid config: {error}") from error
    if version in RENAMES_TO_V3 and architecture == "semantic_sam":
        tensors = {_rename(name, RENAMES_TO_V3[version]): tensor for name, tensor in tensors.items()}
        # The official-layout tensor these versions lack is read by nothing; it keeps the model's initial zeros.
        tensors.setdefault("sem_seg_head.predictor.lang_mapper",
                           torch.zeros(config.decoder.class_dim, config.decoder.hidden_dim))
    return tensors, config, semantic


def _rename(name: str, renames: dict[str, str]) -> str:
    for old, new in renames.items():
        if old in name:
            return name.replace(old, new)
    return name


def read_official(path: str | Path) -> dict[str, Tensor]:
    """The state dict of an official `.pth` release (SAM or Semantic-SAM), read with `weights_only=True`.

    An outer `"model"` dict and `model.` key prefixes (Semantic-SAM) are removed, and the training-only
    `criterion.empty_weight` is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {error}") from error
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(t, Tensor) for t in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    tensors = {name.removeprefix("model."): tensor for name, tensor in data.items()}
    tensors.pop("criterion.empty_weight", None)
    return tensors


def resolve_aliases(model: nn.Module, tensors: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Keeps one tensor per module shared under several names (the official files store every alias).

    Raises:
        CheckpointError: when two aliases of one tensor hold different values.
    """
    canonical = {id(t): name for name, t in model_tensors(model).items()}
    resolved = dict(tensors)
    for name, tensor in model.state_dict(keep_vars=True).items():
        first = canonical.get(id(tensor))
        if first is None or first == name or name not in resolved:
            continue
        alias = resolved.pop(name)
        if first not in resolved:
            resolved[first] = alias
        elif resolved[first].shape != alias.shape or not torch.equal(resolved[first], alias):
            raise CheckpointError(f"checkpoint {source}: {name} should equal {first} (the same module) but differs")
    return resolved


def load_tensors(model: nn.Module, tensors: dict[str, Tensor], source: str) -> None:
    """Copies tensors into the model after checking every key, shape and value; never loads partially.

    Raises:
        CheckpointError: naming the missing and unexpected keys, the shape mismatches and non-finite tensors.
    """
    check_tensors(model, tensors, source)
    expected = model_tensors(model)
    with torch.no_grad():
        for name, tensor in tensors.items():
            expected[name].copy_(tensor)


def check_tensors(model: nn.Module, tensors: dict[str, Tensor], source: str) -> None:
    """Checks that `tensors` fit the model (it may live on the meta device) and hold only finite numbers.

    Raises:
        CheckpointError: naming the missing and unexpected keys, the shape mismatches and non-finite tensors.
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
    broken = sorted(name for name, tensor in tensors.items()
                    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()))
    if broken:
        shown = ", ".join(broken[:10]) + (f", ... ({len(broken) - 10} more)" if len(broken) > 10 else "")
        raise CheckpointError(f"checkpoint {source} has NaN or infinite values in {len(broken)} tensor(s): {shown}; "
                              "the file is damaged or its training diverged")
