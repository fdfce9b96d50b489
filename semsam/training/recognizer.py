"""Fitting the recognizer: ImageNet features of the labelled object masks, projected onto their names' embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from semsam.checkpoint import CheckpointError, load_tensors
from semsam.data.records import SegmentationDataset
from semsam.evaluation.labels import labelled_targets
from semsam.modeling.recognizer import MaskRecognizer
from semsam.text import TextEncoder


@dataclass(frozen=True)
class RecognizerFit:
    """What a fit saw and how well it fits its own samples.

    Args:
        names: the object names fitted, sorted.
        samples: labelled object masks per data set that names objects, in the order given.
        train_accuracy: share of the samples whose own name scores highest among `names`.
    """

    names: list[str]
    samples: list[int]
    train_accuracy: float


def load_imagenet_embedder(recognizer: MaskRecognizer, checkpoint: str | Path) -> None:
    """Loads the frozen network from an ImageNet MobileNetV2 converted by `semsam convert-tflite`.

    Raises:
        CheckpointError: unreadable, or not the ImageNet classifier (a DeepLab backbone lacks the 1280-channel head).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(checkpoint))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"ImageNet weights {checkpoint} could not be read: {error}") from error
    wanted = {name: tensor for name, tensor in tensors.items() if name.startswith(("features.", "head."))}
    if not any(name.startswith("head.") for name in wanted):
        raise CheckpointError(f"{checkpoint} is not an ImageNet classifier (it has no head.* tensors): convert "
                              f"tf2_mobilenet_v2_1.0_224_ptq.tflite with `semsam convert-tflite`")
    load_tensors(recognizer.embedder, wanted, str(checkpoint))


@torch.inference_mode()
def object_features(
    recognizer: MaskRecognizer, dataset: SegmentationDataset, *, max_images: int | None = None, progress: bool = True
) -> tuple[torch.Tensor, list[str]]:
    """Mask-pooled features [n, C] of every labelled object mask (>= 0.5% of its image) and their names."""
    features, names = [], []
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    for index in tqdm(range(count), desc="recognizer features", unit="image", disable=not progress):
        record = dataset[index]
        targets = [(m, name) for m, kind, name in labelled_targets(record, dataset) if kind == "object"]
        if not targets:
            continue
        masks = torch.from_numpy(np.stack([record.masks[m] for m, _ in targets])).to(recognizer.projection.device)
        features.append(recognizer.pool(recognizer.encode(record.image), masks))
        names.extend(name for _, name in targets)
    channels = recognizer.embedder.out_channels
    return (torch.cat(features) if features else torch.zeros(0, channels)), names


def fit_recognizer(
    recognizer: MaskRecognizer,
    datasets: Sequence[SegmentationDataset],
    text_encoder: TextEncoder,
    *,
    weight_decay: float = 1e-2,
    max_iterations: int = 300,
    max_images: int | None = None,
    progress: bool = True,
) -> RecognizerFit:
    """Fits the recognizer's standardisation and projection to the datasets' labelled object masks.

    Logits are standardised features times the projection times the names' text embeddings; the projection
    minimises cross-entropy over the union of the names, each dataset weighing as much as any other however many
    masks it has, plus `weight_decay` times its squared norm (L-BFGS, full batch).

    Args:
        recognizer: its embedder already holds the ImageNet weights (`load_imagenet_embedder`).
        datasets: data sets naming object classes; those without get skipped.
        text_encoder: embeds the names.
        weight_decay: L2 penalty on the projection.
        max_iterations: L-BFGS iterations.
        max_images: read only the first N images of each dataset.
        progress: show progress bars.

    Raises:
        ValueError: no dataset has labelled object masks.
    """
    if weight_decay < 0 or max_iterations < 1:
        raise ValueError(f"weight_decay must be >= 0 and max_iterations >= 1, got {weight_decay}, {max_iterations}")
    parts = [object_features(recognizer, d, max_images=max_images, progress=progress)
             for d in datasets if d.object_names]
    samples = [len(names) for _, names in parts]
    if not sum(samples):
        raise ValueError("no dataset has labelled object masks to fit the recognizer on (e.g. coco, coco_parts)")
    features = torch.cat([f for f, _ in parts]).float().clone()  # out of inference mode, for autograd
    all_names = [name for _, names in parts for name in names]
    vocabulary = sorted(set(all_names))
    targets = torch.tensor([vocabulary.index(name) for name in all_names], device=features.device)
    weights = torch.cat([torch.full((n,), 1.0 / n) for n in samples if n]).to(features.device)
    weights = weights / weights.mean()
    text = text_encoder.encode(vocabulary).to(features.device).float()
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    standardised = (features - mean) / std
    projection = torch.zeros_like(recognizer.projection, dtype=torch.float32).requires_grad_()
    optimizer = torch.optim.LBFGS([projection], max_iter=max_iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = standardised @ projection @ text.T
        loss = (F.cross_entropy(logits, targets, reduction="none") * weights).mean()
        loss = loss + weight_decay * projection.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        recognizer.feature_mean.copy_(mean)
        recognizer.feature_std.copy_(std)
        recognizer.projection.copy_(projection)
        accuracy = float((recognizer.logits(features, text).argmax(1) == targets).float().mean())
    return RecognizerFit(names=vocabulary, samples=samples, train_accuracy=accuracy)
