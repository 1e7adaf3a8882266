"""The application: its factory, lifecycle and the service routes (health, readiness, metrics).

The faces that clients talk to live in their own modules; every route sits behind the same
middlewares.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from . import __version__, ollama_face, openai_face, sse, transcriptions_face
from .catalog import Catalog
from .config import Settings
from .errors import APIError, ShuttingDown
from .images import ImageFetcher
from .limiter import Limiter
from .metrics import Metrics
from .middlewares import (
    DISCOVERY_ROUTES,
    auth_middleware,
    cors_headers,
    cors_middleware,
    error_middleware,
    observe_middleware,
)
from .state import (
    CATALOG,
    IMAGES,
    LIMITER,
    METRICS,
    OLLAMA,
    RESPONSES,
    SETTINGS,
    STREAMS,
    error_response,
    json_response,
)
from .store import open_store
from .upstream import Ollama

log = logging.getLogger("oai2ollama")

__all__ = ["OLLAMA", "bound_port", "create_app", "start"]


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    ollama = request.app[OLLAMA]
    settings = request.app[SETTINGS]
    try:
        version = await ollama.get("/api/version", limit=(settings.connect_timeout or 5) + 5)
    except APIError as err:
        unavailable = APIError(f"Not ready: {err.message}", code=err.code, status=503)
        return error_response(unavailable)
    found = version.get("version") if isinstance(version, dict) else None
    return json_response({"status": "ready", "ollama": {"url": ollama.url, "version": found}})


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[METRICS].render(), content_type="text/plain", charset="utf-8"
    )


def create_app(settings: Settings) -> web.Application:
    middlewares: list[Any] = []
    if settings.cors_origins:
        middlewares.append(cors_middleware(settings.cors_origins))
    middlewares += [error_middleware, observe_middleware]
    if settings.api_keys:
        open_routes = DISCOVERY_ROUTES if settings.open_discovery else frozenset()
        middlewares.append(auth_middleware(settings.api_keys, open_routes))
    app = web.Application(client_max_size=settings.max_body_size, middlewares=middlewares)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[STREAMS] = sse.Streams()
    app[LIMITER] = Limiter(settings.max_concurrency, settings.max_queue, app[METRICS])
    app[OLLAMA] = Ollama(settings)
    app[CATALOG] = Catalog(app[OLLAMA], settings.policy)
    app[RESPONSES] = open_store(
        settings.responses_store,
        ttl=settings.responses_ttl,
        max_entry=settings.responses_max_entry_bytes,
    )
    app.cleanup_ctx.append(_ollama_lifetime)
    app.cleanup_ctx.append(_store_lifetime)
    if settings.allow_image_urls:
        app[IMAGES] = ImageFetcher(settings)
        app.cleanup_ctx.append(_images_lifetime)
    if settings.cors_origins:
        app.on_response_prepare.append(cors_headers)
    app.on_shutdown.append(_drain)

    app.router.add_get("/healthz", healthz, allow_head=True)
    app.router.add_get("/readyz", readyz, allow_head=True)
    app.router.add_get("/metrics", metrics_handler)
    openai_face.add_routes(app)
    transcriptions_face.add_routes(app)
    ollama_face.add_routes(app)
    return app


async def _drain(app: web.Application) -> None:
    """On shutdown (listening already stopped): let requests in flight finish within the grace
    period, then end the streams still open with an error event."""
    metrics = app[METRICS]
    deadline = time.monotonic() + app[SETTINGS].shutdown_grace
    while (metrics.in_flight or metrics.queued) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if app[STREAMS].open:
        log.warning("ending %d open stream(s) for shutdown", len(app[STREAMS].open))
        await app[STREAMS].end_all(ShuttingDown("The server is shutting down; retry the request."))


async def start(settings: Settings) -> web.AppRunner:
    """Start serving ``settings`` on its host and port; the caller owns ``runner.cleanup()``.

    ``handler_cancellation``: a client that goes away cancels its handler, and with it the
    upstream request, so Ollama stops generating for nobody.
    """
    runner = web.AppRunner(
        create_app(settings),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=settings.shutdown_grace + 2,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner, default: int) -> int:
    """The port actually bound (differs from the setting when that is 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return default


async def _ollama_lifetime(app: web.Application) -> AsyncIterator[None]:
    await app[OLLAMA].start()
    yield
    await app[OLLAMA].close()


async def _store_lifetime(app: web.Application) -> AsyncIterator[None]:
    await app[RESPONSES].start()
    yield
    await app[RESPONSES].close()


async def _images_lifetime(app: web.Application) -> AsyncIterator[None]:
    await app[IMAGES].start()
    yield
    await app[IMAGES].close()
