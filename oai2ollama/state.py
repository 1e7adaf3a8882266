"""What every handler and middleware shares: the application's state keys, the per-request
record, and the JSON edges of a request."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from . import sse
from .catalog import Catalog
from .config import Settings
from .errors import APIError, InvalidRequest
from .images import ImageFetcher
from .limiter import Limiter
from .metrics import Metrics
from .store import ResponseStore
from .upstream import Ollama

log = logging.getLogger("oai2ollama")

SETTINGS = web.AppKey("settings", Settings)

OLLAMA = web.AppKey("ollama", Ollama)

IMAGES = web.AppKey("images", ImageFetcher)

CATALOG = web.AppKey("catalog", Catalog)

METRICS = web.AppKey("metrics", Metrics)

STREAMS = web.AppKey("streams", sse.Streams)

RESPONSES = web.AppKey("responses", ResponseStore)
LIMITER = web.AppKey("limiter", Limiter)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Exchange:
    """What a handler learns about its request, for the access log and the metrics."""

    started: float
    model: str | None = None
    usage: dict[str, int] | None = None
    tenant: str = ""  # the hash of the API key that matched ("" without keys): owns stored data


_request_key = getattr(web, "RequestKey", None)  # aiohttp ≥ 3.13; a plain key before

EXCHANGE: Any = _request_key("exchange", Exchange) if _request_key else "oai2ollama.exchange"


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, headers=headers, content_type="application/json"
    )


def error_response(err: APIError) -> web.Response:
    return json_response(err.body(), err.status, err.headers or None)


def ollama_path(path: str) -> bool:
    """Whether ``path`` is on Ollama's face (its own API at the root), whose clients read errors
    in Ollama's shape."""
    return path.startswith("/api/") or path == "/" or path == "/api"


def ollama_error(err: APIError) -> bytes:
    """An error in Ollama's shape, ``{"error": "..."}``: the body of an answer, or the last line
    of a stream."""
    return orjson.dumps({"error": err.message})


def ollama_error_response(err: APIError) -> web.Response:
    return web.Response(
        body=ollama_error(err),
        status=err.status,
        headers=err.headers or None,
        content_type="application/json",
    )


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if request.app[SETTINGS].log_bodies:
        log.debug(
            "%s %s body: %s", request.method, request.path, raw[:65536].decode(errors="replace")
        )
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON ({exc}).", code="invalid_json"
        ) from None
