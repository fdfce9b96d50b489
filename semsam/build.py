"""Building models from the registry and loading checkpoints: embedded, downloaded, official .pth or semsam."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from semsam.checkpoint import (
    CheckpointError, check_tensors, load_tensors, read_checkpoint, read_official, resolve_aliases,
)
from semsam.config import (
    DEFAULT_MODEL, MODEL_CONFIGS, ModelConfig, RecognizerConfig, SamConfig, SemanticInfo, SemanticSamConfig,
)
from semsam.download import OFFICIAL_FILES, fetch_official
from semsam.modeling import SemanticSam
from semsam.modeling.sam import Sam

ASSETS = Path(__file__).resolve().parent / "assets"
EMBEDDED_CHECKPOINTS = {DEFAULT_MODEL: ASSETS / f"{DEFAULT_MODEL}.safetensors"}
OFFICIAL_SUFFIXES = (".pth", ".pt")
# semsam's own tensors, absent from the released Semantic-SAM files (whose classification heads were never
# trained): the text projection and logit scale keep their initial values.
OFFICIAL_ABSENT_KEYS = ("sem_seg_head.predictor.text_projection", "sem_seg_head.predictor.logit_scale")


def model_from_config(config: ModelConfig, semantic: SemanticInfo | None = None) -> SemanticSam | Sam:
    """A randomly initialised model of the config's architecture."""
    model_cls = Sam if isinstance(config, SamConfig) else SemanticSam
    return model_cls(config=config, semantic=semantic)


def build_model(name: str, *, rank_head: bool | None = None) -> SemanticSam | Sam:
    """A randomly initialised model of a registered size.

    Args:
        name: a registered model (`semsam.MODEL_CONFIGS`).
        rank_head: None keeps the config's choice. Training leaves the rank head out (False), since it changes
            the decoder tokens the head was fitted on (`semsam calibrate-iou` fits a new one), unless it trains
            the head too (True, `rank_weight`).
    """
    _check_name(name)
    config = MODEL_CONFIGS[name]
    if rank_head is not None and isinstance(config, SemanticSamConfig):
        config = replace(config, decoder=replace(config.decoder, rank_head=rank_head))
    return model_from_config(config)


def load_model(
    name: str | None = None, *, checkpoint: str | Path | None = None, device: str = "cpu"
) -> SemanticSam | Sam:
    """Loads a model ready for inference.

    Args:
        name: a registered model (`semsam.MODEL_CONFIGS`); None means the checkpoint's own config, or the
            embedded default when no checkpoint is given either.
        checkpoint: a semsam safetensors file or an official `.pth` release; None loads the model's embedded
            weights, or downloads its official release into the cache (`semsam.download.checkpoint_dir()`).
        device: where to put the model.

    Returns:
        The model in eval mode.

    Raises:
        ValueError: unknown name, or no checkpoint available for it.
        CheckpointError: unreadable file, or tensors that do not match the config.
        DownloadError: the official file could not be downloaded or failed its checksum.
    """
    if name is not None:
        _check_name(name)
    if checkpoint is None:
        name = name or DEFAULT_MODEL
        if name in OFFICIAL_FILES:
            checkpoint = fetch_official(name)
        elif name in EMBEDDED_CHECKPOINTS:
            checkpoint = EMBEDDED_CHECKPOINTS[name]
            if not checkpoint.is_file():
                raise CheckpointError(f"the embedded checkpoint {checkpoint} is missing: reinstall semsam")
        else:
            raise ValueError(f"model {name!r} has no embedded or official weights: pass checkpoint=PATH")
    if Path(checkpoint).suffix in OFFICIAL_SUFFIXES:
        model = load_official(name, checkpoint)
    else:
        model = _load_semsam(name, checkpoint)
    return model.to(torch.device(device)).eval()


def load_official(name: str | None, checkpoint: str | Path) -> SemanticSam | Sam:
    """A registered model with the weights of an official `.pth` file, every key and shape checked.

    semsam's own tensors (`own_tensors_absent_from_official`) keep their initial values.
    """
    if name is None:
        raise ValueError(
            f"{checkpoint} is an official .pth file, which carries no config: name its model, e.g. "
            f"load_model('sam_vit_b', checkpoint=...) (known: {', '.join(sorted(MODEL_CONFIGS))})"
        )
    _check_name(name)
    official = read_official(checkpoint)
    model = build_model(name)
    tensors = resolve_aliases(model, official, str(checkpoint))
    own = model.state_dict()
    for key in own_tensors_absent_from_official(model):
        if key not in tensors:
            tensors[key] = own[key]
    load_tensors(model, tensors, str(checkpoint))
    return model


def load_backbone(model: SemanticSam, checkpoint: str | Path) -> None:
    """Initialises a model's backbone from pretrained weights made by `semsam convert-tflite`.

    The file's backbone tensors (`features.*`) must match the backbone exactly; a classifier's head is ignored.

    Raises:
        CheckpointError: not a converted backbone file, or tensors that do not fit this backbone.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(checkpoint))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"backbone checkpoint {checkpoint} could not be read: {error}") from error
    features = {name: tensor for name, tensor in tensors.items() if name.startswith("features.")}
    if not features:
        raise CheckpointError(f"{checkpoint} holds no backbone tensors (features.*): make it with "
                              f"`semsam convert-tflite`")
    load_tensors(model.backbone, features, str(checkpoint))


def transfer_heads(model: SemanticSam, checkpoint: str | Path) -> list[str]:
    """Starts a model's pixel decoder and prompt decoder from another semsam checkpoint's (for a new backbone).

    Every `sem_seg_head.*` tensor of the same name and shape is copied; the others (the projections of the
    backbone's features, whose channels differ) keep their initialisation and are returned.

    Raises:
        CheckpointError: unreadable file, or one that shares no head tensor with the model.
    """
    tensors, _, _ = read_checkpoint(checkpoint)
    own = model.state_dict()
    heads = [name for name in own if name.startswith("sem_seg_head.")]
    fitting = {name: tensors[name] for name in heads if name in tensors and tensors[name].shape == own[name].shape}
    if not fitting:
        raise CheckpointError(f"{checkpoint} shares no decoder tensor with this model")
    with torch.no_grad():
        for name, tensor in fitting.items():
            own[name].copy_(tensor)
    # Shared (aliased) modules are stored under one name: a tensor copied under its other name is not fresh.
    copied = {own[name].data_ptr() for name in fitting}
    return sorted(name for name in heads if own[name].data_ptr() not in copied)


# Parts added to the model after the first checkpoints: each starts neutral (the refiner with a zero residual, the
# recognizer with a zero projection), so a checkpoint without them keeps its outputs.
NEW_PARTS = (".click_refiner.", "recognizer.")
IOU_HEAD_PREFIX = "sem_seg_head.predictor.iou_prediction_head."
RANK_HEAD_PREFIX = "sem_seg_head.predictor.rank_head."


def with_new_parts(model: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tensors` completed with the model's freshly initialised click refiner and recognizer when they lack them.

    This lets training add either part to a trained model.
    """
    own = model.state_dict()
    fresh = {key: own[key] for key in own if any(part in key for part in NEW_PARTS) and key not in tensors}
    return {**tensors, **fresh}


def load_with_recognizer(checkpoint: str | Path) -> SemanticSam:
    """A semsam checkpoint's model, with a new (unfitted) recognizer added when it has none, for fitting one.

    Raises:
        CheckpointError: unreadable file, tensors that do not match, or not a Semantic-SAM model.
    """
    tensors, config, semantic = _read_semantic_sam(checkpoint, "only Semantic-SAM models name objects")
    if config.recognizer is None:
        config = replace(config, recognizer=RecognizerConfig())
    model = model_from_config(config, semantic)
    load_tensors(model, with_new_parts(model, tensors), str(checkpoint))
    return model


def load_with_rank_head(checkpoint: str | Path) -> SemanticSam:
    """A semsam checkpoint's model, with a rank head added when it has none, for fitting one.

    A new rank head is a copy of the trained IoU head, so the model ranks its masks as before until it is fitted.

    Raises:
        CheckpointError: unreadable file, tensors that do not match, or not a Semantic-SAM model.
    """
    tensors, config, semantic = _read_semantic_sam(checkpoint, "only Semantic-SAM models have a rank head")
    if not config.decoder.rank_head:
        config = replace(config, decoder=replace(config.decoder, rank_head=True))
    model = model_from_config(config, semantic)
    load_tensors(model, with_rank_head(tensors), str(checkpoint))
    return model


def with_rank_head(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tensors` with a rank head: theirs, else a copy of their IoU head, which ranks the masks as before."""
    if any(key.startswith(RANK_HEAD_PREFIX) for key in tensors):
        return tensors
    return {**tensors, **{RANK_HEAD_PREFIX + key[len(IOU_HEAD_PREFIX):]: value
                          for key, value in tensors.items() if key.startswith(IOU_HEAD_PREFIX)}}


def without_rank_head(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tensors` less the rank head's, for a model trained on, which leaves the head out (`build_model`)."""
    return {key: value for key, value in tensors.items() if not key.startswith(RANK_HEAD_PREFIX)}


def _read_semantic_sam(checkpoint: str | Path, why: str) -> tuple[dict[str, torch.Tensor], SemanticSamConfig,
                                                                  SemanticInfo]:
    tensors, config, semantic = read_checkpoint(checkpoint)
    if not isinstance(config, SemanticSamConfig):
        raise CheckpointError(f"{checkpoint} holds a {type(config).__name__}; {why}")
    return tensors, config, semantic


def own_tensors_absent_from_official(model: nn.Module) -> list[str]:
    """The model's tensors that are semsam's own, not in the official files: they keep their initial values."""
    own = model.state_dict()
    return [key for key in OFFICIAL_ABSENT_KEYS if key in own]


def _load_semsam(name: str | None, checkpoint: str | Path) -> nn.Module:
    tensors, file_config, semantic = read_checkpoint(checkpoint)
    config = MODEL_CONFIGS[name] if name is not None else file_config
    if name is not None and file_config != config:
        if type(file_config) is not type(config):
            raise CheckpointError(f"checkpoint {checkpoint} holds a {type(file_config).__name__}, not {name!r}")
        differing = [key for key, value in config.to_dict().items() if file_config.to_dict()[key] != value]
        raise CheckpointError(
            f"checkpoint {checkpoint} was written for a different config than {name!r} (differs in: "
            f"{', '.join(differing)}); load it with load_model(checkpoint=PATH) to use its own config"
        )
    # A file's config may ask for any size, so its shapes are compared on a model without storage first; except
    # the embedded default's (7 M parameters, built in 0.06 s), as the meta build's first normal_ imports
    # torch._dynamo (1.4 s) and every `semsam segment` loads that model.
    if config != MODEL_CONFIGS[DEFAULT_MODEL]:
        try:
            with torch.device("meta"):
                skeleton = model_from_config(config, semantic)
        except (ValueError, TypeError, RuntimeError, AssertionError, IndexError, ZeroDivisionError) as error:
            raise CheckpointError(f"checkpoint {checkpoint} has a config no model can be built from: {error}") from None
        check_tensors(skeleton, tensors, str(checkpoint))
    model = model_from_config(config, semantic)
    load_tensors(model, tensors, str(checkpoint))
    return model


def _check_name(name: str) -> None:
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODEL_CONFIGS))}")


__all__ = ["CheckpointError", "SemanticInfo", "build_model", "load_backbone", "load_model", "load_official",
           "load_with_recognizer", "model_from_config", "transfer_heads", "with_new_parts"]
