"""Uploaded images and a bounded LRU cache of their embeddings (one encoded `Predictor` per image or crop)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from semsam.modeling import SemanticSam
from semsam.predictor import Predictor
from semsam.text import TextEncoder
from semsam.zoom import Box

T = TypeVar("T")


class UnknownImage(KeyError):
    """No image with this id: never uploaded, or forgotten to make room (answered with 404)."""


@dataclass
class _Session:
    """An encoded image; its lock keeps one request at a time on it, as a `Predictor` holds one vocabulary."""

    predictor: Predictor
    vocabulary: tuple[str | None, str | None] = (None, None)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ImageStore:
    """Keeps the last `max_images` uploads and the embeddings of the last `max_embeddings` images used.

    Thread-safe: model work runs in worker threads, lookups on the event loop.

    Args:
        model: the model every image is encoded with.
        max_images: uploads kept (least recently used forgotten first).
        max_embeddings: encoded images kept (least recently used forgotten first).
    """

    def __init__(self, *, model: SemanticSam, max_images: int, max_embeddings: int) -> None:
        self.model = model
        self._max_images, self._max_embeddings = max_images, max_embeddings
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()
        # Keyed by (image id, crop), the crop None for the whole image.
        self._sessions: OrderedDict[tuple[str, Box | None], _Session] = OrderedDict()
        self._encoding: dict[tuple[str, Box | None], threading.Lock] = {}
        self._lock = threading.Lock()
        self.encodes = 0
        # Vocabularies come from users: embeddings are kept in memory for the last few only, never on disk.
        self.text_encoder = TextEncoder(disk_cache=False, memory_cache=max_embeddings)

    def add(self, image: np.ndarray) -> str:
        """Stores an HxWx3 uint8 image; returns its id (a content hash, so re-uploads reuse the embedding)."""
        digest = hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()[:20]
        with self._lock:
            self._images[digest] = image
            self._images.move_to_end(digest)
            while len(self._images) > self._max_images:
                forgotten, _ = self._images.popitem(last=False)
                for key in [key for key in self._sessions if key[0] == forgotten]:
                    del self._sessions[key]
        return digest

    def image(self, image_id: str) -> np.ndarray:
        """The stored image. Raises UnknownImage."""
        with self._lock:
            if image_id not in self._images:
                raise UnknownImage(image_id)
            self._images.move_to_end(image_id)
            return self._images[image_id]

    def is_encoded(self, image_id: str) -> bool:
        """Whether the image's embedding is in the cache."""
        with self._lock:
            return (image_id, None) in self._sessions

    @property
    def cached_embeddings(self) -> int:
        """How many encoded images the cache holds."""
        with self._lock:
            return len(self._sessions)

    def with_predictor(
        self, image_id: str, work: Callable[[Predictor], T], *, objects: str | None = None, parts: str | None = None,
        crop: Box | None = None,
    ) -> T:
        """Runs `work` on the image's encoded predictor, encoding the image first if it is not cached.

        Args:
            crop: (x0, y0, x1, y1) inside the image: the predictor of that crop, encoded as an image of its own and
                cached beside the whole image's.

        Blocking: call it from a worker thread. Raises UnknownImage.
        """
        session = self._session(image_id, crop)
        with session.lock:
            if session.vocabulary != (objects, parts):
                session.predictor.set_vocabulary(objects=objects, parts=parts)
                session.vocabulary = (objects, parts)
            return work(session.predictor)

    def _session(self, image_id: str, crop: Box | None) -> _Session:
        key = (image_id, crop)
        with self._lock:
            if key in self._sessions:
                self._sessions.move_to_end(key)
                return self._sessions[key]
            encoding = self._encoding.setdefault(key, threading.Lock())
        # Only one thread encodes a given image; others asking for it wait and then find it cached.
        with encoding:
            with self._lock:
                if key in self._sessions:
                    return self._sessions[key]
            image = self.image(image_id)
            if crop is not None:
                x0, y0, x1, y1 = crop
                image = image[y0:y1, x0:x1]
            predictor = Predictor(self.model, text_encoder=self.text_encoder)
            predictor.set_image(image)
            with self._lock:
                self.encodes += 1
                self._encoding.pop(key, None)
                session = self._sessions[key] = _Session(predictor=predictor)
                while len(self._sessions) > self._max_embeddings:
                    self._sessions.popitem(last=False)
                return session
