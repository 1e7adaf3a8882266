"""Ollama's face: Ollama's own API at the root, for the clients written for Ollama.

Discovery (``/``, ``/api/version``, ``/api/tags``, ``/api/show``, ``/api/ps``) and inference
(``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/embeddings``) pass through to Ollama
with this server's edges: keys, the limiter, aliases and per-model defaults, metrics and the
access log. Ollama's answers go back as they came, streams line by line as they arrive; errors
are in Ollama's shape, ``{"error": "..."}``, with Ollama's statuses. Model management is
refused unless the operator allows it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from . import policy, sse
from .errors import (
    APIError,
    InvalidRequest,
    PermissionDenied,
    UpstreamError,
    from_ollama,
    retry_after_value,
)
from .state import (
    CATALOG,
    EXCHANGE,
    LIMITER,
    METRICS,
    OLLAMA,
    SETTINGS,
    STREAMS,
    ollama_error,
    read_json,
)
from .translate import native
from .translate.models import context_length_of
from .upstream import Ollama

log = logging.getLogger("oai2ollama")

NDJSON = "application/x-ndjson"
STREAM_HEADERS = {"Content-Type": NDJSON}

MANAGEMENT_REFUSED = (
    "Model management ({route}) is turned off on this server; the operator can allow it with "
    "--allow-model-management."
)


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def version(request: web.Request) -> web.Response:
    return await _relay_get(request, "/api/version")


async def running(request: web.Request) -> web.Response:
    return await _relay_get(request, "/api/ps")


async def tags(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    listing = await catalog.tags(fresh=True)
    rules = catalog.policy

    def context_for(model: str, trained: int | None) -> int | None:
        return policy.default_num_ctx(rules, rules.profile(model), trained)

    answer = native.tags_answer(listing, rules.listed_aliases(), context_for)
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def show(request: web.Request) -> web.Response:
    """``/api/show``: an alias answers for its model, and ``<arch>.context_length`` is the
    context this server runs the model with, where it sets ``num_ctx``."""
    body = await _read_object(request)
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("model is required")
    catalog = request.app[CATALOG]
    target = await catalog.route(name)
    body.pop("name", None)
    body["model"] = target
    ollama = request.app[OLLAMA]
    async with ollama.exchange("POST", "/api/show", orjson.dumps(body)) as resp:
        raw = await ollama.read(resp)
    profile = catalog.policy.profile(target)
    if resp.status != 200 or profile.num_ctx is None:
        return _passed(request, resp, raw)
    try:
        info = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError("Ollama answered /api/show with a body that is not JSON.") from None
    trained = context_length_of(info) if isinstance(info, dict) else None
    num_ctx = policy.default_num_ctx(catalog.policy, profile, trained)
    return web.Response(
        body=orjson.dumps(native.show_answer(info, num_ctx)), content_type="application/json"
    )


async def chat(request: web.Request) -> web.StreamResponse:
    return await _infer(request, "/api/chat", generates=True)


async def generate(request: web.Request) -> web.StreamResponse:
    return await _infer(request, "/api/generate", generates=True)


async def embed(request: web.Request) -> web.StreamResponse:
    return await _infer(request, "/api/embed", generates=False)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _infer(request, "/api/embeddings", generates=False)


async def _infer(request: web.Request, path: str, *, generates: bool) -> web.StreamResponse:
    """The request, with the alias resolved and the model's defaults applied where it sets
    none, to Ollama; the answer back as it comes, under the name the client asked for."""
    app = request.app
    body = await _read_object(request)
    requested = body.get("model")
    named = isinstance(requested, str) and bool(requested)
    if named:
        request[EXCHANGE].model = requested
    if not isinstance(body.get("options") or {}, dict):
        raise InvalidRequest("options must be an object")
    async with app[LIMITER].slot():
        target = await app[CATALOG].prepare(body, requested) if named else requested
        request[EXCHANGE].target = target
        rename = native.renamer(target, requested) if target != requested else None
        ollama = app[OLLAMA]
        async with ollama.exchange("POST", path, orjson.dumps(body)) as resp:
            if resp.status == 200 and resp.content_type == NDJSON:
                lines = _lines(request, ollama, resp, path, rename, complete=generates)
                return await _stream(request, lines)
            raw = await ollama.read(resp)
        if resp.status == 200:
            if rename is not None:
                raw = rename(raw)
            request[EXCHANGE].usage = native.usage_in(raw)
        return _passed(request, resp, raw)


async def manage(request: web.Request) -> web.StreamResponse:
    """Model management, passed through as it is when the operator allows it: progress streams
    line by line, blobs without being held in memory."""
    if not request.app[SETTINGS].allow_model_management:
        raise PermissionDenied(MANAGEMENT_REFUSED.format(route=_route(request)))
    data: Any = None
    if request.path.startswith("/api/blobs/"):
        data = request.content if request.method == "POST" else None
    elif request.body_exists:
        data = await request.read()
    ollama = request.app[OLLAMA]
    async with ollama.exchange(request.method, request.rel_url.raw_path, data) as resp:
        if resp.status == 200 and resp.content_type == NDJSON:
            lines = _lines(request, ollama, resp, _route(request), None, complete=False)
            return await _stream(request, lines)
        raw = await ollama.read(resp)
    return _passed(request, resp, raw)


async def _relay_get(request: web.Request, path: str) -> web.Response:
    ollama = request.app[OLLAMA]
    async with ollama.exchange("GET", path) as resp:
        raw = await ollama.read(resp)
    return _passed(request, resp, raw)


def _passed(request: web.Request, resp: aiohttp.ClientResponse, raw: bytes) -> web.Response:
    """Ollama's answer as it came: status, body, content type and ``Retry-After``."""
    if resp.status >= 500:
        request.app[METRICS].upstream_error(from_ollama(resp.status, "").code)
    answer = web.Response(body=raw, status=resp.status)
    content_type = resp.headers.get("Content-Type")
    if content_type:
        answer.headers["Content-Type"] = content_type
    retry = retry_after_value(resp.headers.get("Retry-After"))
    if retry:  # "later": when, as Ollama said it
        answer.headers["Retry-After"] = retry
    return answer


async def _read_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


async def _lines(
    request: web.Request,
    ollama: Ollama,
    resp: aiohttp.ClientResponse,
    route: str,
    rename: Callable[[bytes], bytes] | None,
    *,
    complete: bool,
) -> AsyncGenerator[bytes, None]:
    """Ollama's NDJSON, the lines of each network read in one write. Only the last line of a
    read is looked at: the answer's final line (its token counts) or an error line always ends
    the stream."""
    metrics = request.app[METRICS]
    exchange = request[EXCHANGE]
    finished = first = False
    async for lines in ollama.lines(resp):
        if not first:
            first = True
            metrics.time_to_first_token(route, time.perf_counter() - exchange.started)
        if rename is not None:
            lines = [rename(line) for line in lines]
        last = lines[-1]
        if b'"done":true' in last:
            finished = True
            exchange.usage = native.usage_in(last)
        elif last.startswith(b'{"error"'):
            finished = True
            log.warning(
                "Ollama ended a stream with an error: %s", last[:500].decode("utf-8", "replace")
            )
            metrics.upstream_error("upstream_error")
        yield b"\n".join(lines) + b"\n"
    if complete and not finished:
        raise UpstreamError("Ollama ended the stream before the answer was complete.")


def _last_line(err: APIError) -> bytes:
    return ollama_error(err) + b"\n"


async def _stream(request: web.Request, lines: AsyncGenerator[bytes, None]) -> web.StreamResponse:
    """Answer with NDJSON ``lines``, counted in the metrics; a failure after the first line is
    one last ``{"error": "..."}`` line. No keep-alive bytes: Ollama's clients parse every line."""
    app = request.app
    metrics = app[METRICS]
    metrics.open_streams += 1
    try:
        return await sse.respond(
            request,
            lines,
            headers=STREAM_HEADERS,
            interval=0,
            streams=app[STREAMS],
            on_error=lambda err: metrics.upstream_error(err.code),
            last_event=_last_line,
        )
    finally:
        metrics.open_streams -= 1


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/", root, allow_head=True)
    router.add_get("/api/version", version, allow_head=True)
    router.add_get("/api/tags", tags, allow_head=True)
    router.add_post("/api/show", show)
    router.add_get("/api/ps", running)
    router.add_post("/api/chat", chat)
    router.add_post("/api/generate", generate)
    router.add_post("/api/embed", embed)
    router.add_post("/api/embeddings", embeddings)
    for path in ("/api/pull", "/api/push", "/api/create", "/api/copy"):
        router.add_post(path, manage)
    router.add_delete("/api/delete", manage)
    router.add_post("/api/blobs/{digest}", manage)
    router.add_head("/api/blobs/{digest}", manage)
