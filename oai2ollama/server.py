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
from .exchange import TRUSTED_PROXIES, Exchange, parse_networks
from .images import ImageFetcher
from .limiter import Limiter
from .metrics import Metrics
from .middlewares import (
    DISCOVERY_ROUTES,
    auth_middleware,
    cors_headers,
    cors_middleware,
    observe_middleware,
)
from .protocol import EdgeRunner
from .state import (
    CATALOG,
    IMAGES,
    IN_FLIGHT,
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

NO_LIMIT = 365 * 24 * 3600.0
UP_CHECK = 2.0  # seconds /metrics waits for Ollama's /api/version to set oai2ollama_ollama_up


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


METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def metrics_handler(request: web.Request) -> web.Response:
    app = request.app
    try:
        await app[OLLAMA].get("/api/version", limit=UP_CHECK)
        up = True
    except APIError:
        up = False
    body = app[METRICS].render(ollama_up=up).encode()
    return web.Response(body=body, headers={"Content-Type": METRICS_TYPE})


def create_app(settings: Settings) -> web.Application:
    # The chain is built from the settings: a middleware that would do nothing is left out.
    metrics = Metrics(settings.policy)
    in_flight: set[Exchange] = set()
    middlewares: list[Any] = [observe_middleware(settings, metrics, in_flight)]
    if settings.cors_origins:
        middlewares.append(cors_middleware(settings.cors_origins))
    if settings.api_keys:
        open_routes = DISCOVERY_ROUTES if settings.open_discovery else frozenset()
        middlewares.append(auth_middleware(settings.api_keys, open_routes))
    app = web.Application(client_max_size=settings.max_body_size, middlewares=middlewares)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[IN_FLIGHT] = in_flight
    if settings.trusted_proxies:
        app[TRUSTED_PROXIES] = parse_networks(settings.trusted_proxies)
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
    period; then answer those still waiting with a 503 and end the open streams with an error
    event, so that every client learns what happened and the process exits on time."""
    in_flight = app[IN_FLIGHT]
    deadline = time.monotonic() + app[SETTINGS].shutdown_grace
    while in_flight and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    waiting = [e for e in in_flight if not e.stream and e.task is not None]
    if waiting:
        log.warning("answering %d request(s) still in flight with 503 for shutdown", len(waiting))
        for exchange in waiting:
            exchange.stopping = True
            exchange.task.cancel()  # type: ignore[union-attr]
    if app[STREAMS].open:
        log.warning("ending %d open stream(s) for shutdown", len(app[STREAMS].open))
        await app[STREAMS].end_all(ShuttingDown("The server is shutting down; retry the request."))
    deadline = time.monotonic() + 1.0
    while in_flight and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def start(settings: Settings) -> web.AppRunner:
    """Start serving ``settings`` on its host and port; the caller owns ``runner.cleanup()``.

    ``handler_cancellation``: a client that goes away cancels its handler, and with it the
    upstream request, so Ollama stops generating for nobody.
    """
    runner = EdgeRunner(
        create_app(settings),
        handler_cancellation=True,
        access_log=None,
        # Requests in flight are drained by `_drain`; after it, nothing should be left to wait for.
        shutdown_timeout=1.0,
        header_timeout=settings.client_header_timeout,
        # aiohttp closes a connection idle for this long, and one that never sends a request.
        keepalive_timeout=settings.client_idle_timeout or NO_LIMIT,
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
