"""Serving limits, and the runner that keeps model work off the event loop, bounded in count and time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ServeLimits:
    """What one server accepts and how much work it takes on at once.

    Args:
        max_upload_bytes: largest accepted upload.
        max_pixels: largest accepted image, width x height (checked from the header, before decoding).
        max_images: uploaded images kept; the least recently used is forgotten first.
        max_embeddings: encoded images kept (LRU); a click on one of them only runs the decoder.
        max_points: clicks per request.
        max_points_per_side: the densest click grid "segment everything" may use.
        max_vocabulary_names: object or part names per request.
        max_name_length: characters per object or part name.
        max_concurrency: model calls running at once, each in a worker thread.
        max_queue: requests allowed to wait for a free worker; more are refused at once.
        queue_timeout_s: how long a request waits for a worker before it is refused.
        request_timeout_s: how long a model call may take before the request is answered with an error.
        read_timeout_s: how long a client may take to send a whole request (headers and body); slower or
            half-open connections are closed.
        keep_alive_s: how long an idle kept-alive connection stays open.
        max_connections: open connections at once; requests on more get 503.
    """

    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 4096 * 4096
    max_images: int = 32
    max_embeddings: int = 8
    max_points: int = 64
    max_points_per_side: int = 32
    max_vocabulary_names: int = 1000
    max_name_length: int = 100
    max_concurrency: int = 1
    max_queue: int = 16
    queue_timeout_s: float = 30.0
    request_timeout_s: float = 120.0
    read_timeout_s: float = 60.0
    keep_alive_s: int = 5
    max_connections: int = 64

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"serving limit {name} must be positive, got {value}")


class ServerBusy(Exception):
    """The request could not be served in time; answered with 503 and a Retry-After header."""


class ModelRunner:
    """Runs blocking model calls in worker threads: at most `max_concurrency` at once, the rest queue.

    Create it inside the running event loop (the app's lifespan does), because its semaphore belongs to that loop.
    """

    def __init__(self, limits: ServeLimits) -> None:
        self._limits = limits
        self._slots = asyncio.Semaphore(limits.max_concurrency)
        self._executor = ThreadPoolExecutor(max_workers=limits.max_concurrency, thread_name_prefix="semsam-model")
        self.waiting = 0

    async def run(self, work: Callable[[], T]) -> T:
        """Waits for a free worker (up to queue_timeout_s), then runs `work` there (up to request_timeout_s).

        Raises:
            ServerBusy: the queue is full, no worker freed up in time, or the work ran past its time limit.
        """
        limits = self._limits
        if self.waiting >= limits.max_queue:
            raise ServerBusy(f"the server is busy ({self.waiting} requests are waiting); try again in a moment")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), limits.queue_timeout_s)
        except TimeoutError:
            raise ServerBusy(
                f"the server is busy: no model worker became free within {limits.queue_timeout_s:g} s; try again"
            ) from None
        finally:
            self.waiting -= 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, work)
        # A thread cannot be stopped: its slot is given back when the work really ends, not when the request gives up.
        future.add_done_callback(lambda _: self._slots.release())
        try:
            return await asyncio.wait_for(asyncio.shield(future), limits.request_timeout_s)
        except TimeoutError:
            raise ServerBusy(
                f"the model took longer than the {limits.request_timeout_s:g} s limit for one request; "
                "try a smaller image or fewer levels"
            ) from None

    def close(self) -> None:
        """Lets running work finish and stops the worker threads."""
        self._executor.shutdown(wait=True, cancel_futures=True)
