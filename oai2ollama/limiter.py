"""The concurrency cap in front of Ollama, with a bounded queue."""

from __future__ import annotations

import asyncio

from .errors import RateLimited
from .metrics import Metrics


class Limiter:
    """At most ``limit`` generation requests at Ollama, ``queue`` more waiting; beyond, 429."""

    def __init__(self, limit: int, queue: int, metrics: Metrics) -> None:
        self._semaphore = asyncio.Semaphore(limit) if limit > 0 else None
        self._queue = queue
        self._waiting = 0
        self._metrics = metrics

    def slot(self) -> Limiter:
        """``async with limiter.slot():`` holds one slot for the block. A plain object with
        ``__aenter__``/``__aexit__`` rather than a generator-based context manager: this runs on
        every generation request."""
        return self

    async def __aenter__(self) -> None:
        metrics = self._metrics
        semaphore = self._semaphore
        if semaphore is not None:
            if semaphore.locked() and self._waiting >= self._queue:
                metrics.rejected += 1
                raise RateLimited(
                    "Too many requests are waiting for the model; retry shortly.",
                    headers={"Retry-After": "1"},
                )
            self._waiting += 1
            metrics.queued += 1
            try:
                await semaphore.acquire()
            finally:
                self._waiting -= 1
                metrics.queued -= 1
        metrics.in_flight += 1

    async def __aexit__(self, *exc_info: object) -> None:
        self._metrics.in_flight -= 1
        if self._semaphore is not None:
            self._semaphore.release()
