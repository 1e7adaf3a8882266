"""The concurrency cap in front of Ollama, with a bounded queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .errors import RateLimited
from .metrics import Metrics


class Limiter:
    """At most ``limit`` generation requests at Ollama, ``queue`` more waiting; beyond, 429."""

    def __init__(self, limit: int, queue: int, metrics: Metrics) -> None:
        self._semaphore = asyncio.Semaphore(limit) if limit > 0 else None
        self._queue = queue
        self._waiting = 0
        self._metrics = metrics

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        metrics = self._metrics
        if self._semaphore is not None:
            if self._semaphore.locked() and self._waiting >= self._queue:
                metrics.rejected += 1
                raise RateLimited(
                    "Too many requests are waiting for the model; retry shortly.",
                    headers={"Retry-After": "1"},
                )
            self._waiting += 1
            metrics.queued += 1
            try:
                await self._semaphore.acquire()
            finally:
                self._waiting -= 1
                metrics.queued -= 1
        metrics.in_flight += 1
        try:
            yield
        finally:
            metrics.in_flight -= 1
            if self._semaphore is not None:
                self._semaphore.release()
