"""The HTTP side: application factory, routes, middlewares, SSE writing.

Handlers stay thin — parse, translate, call Ollama, translate back, write — and every failure
becomes an OpenAI error object in :func:`error_middleware`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hmac
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from . import __version__, policy, sse
from .catalog import Catalog
from .config import Settings
from .errors import (
    APIError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ShuttingDown,
    Unauthorized,
    UnknownURL,
    UpstreamError,
)
from .images import ImageFetcher
from .metrics import Metrics
from .store import ResponseStore
from .translate import chat, common, completions, embeddings, models, responses
from .translate.common import ChoiceStream, new_id
from .upstream import Ollama

log = logging.getLogger("oai2ollama")
access = logging.getLogger("oai2ollama.access")

SETTINGS = web.AppKey("settings", Settings)
OLLAMA = web.AppKey("ollama", Ollama)
IMAGES = web.AppKey("images", ImageFetcher)
CATALOG = web.AppKey("catalog", Catalog)
METRICS = web.AppKey("metrics", Metrics)
STREAMS = web.AppKey("streams", sse.Streams)
RESPONSES = web.AppKey("responses", ResponseStore)

# Paths that answer without the shim's API key: liveness and readiness probes.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
EXPOSED_HEADERS = "X-Oai2ollama-Warning, Retry-After"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Exchange:
    """What a handler learns about its request, for the access log and the metrics."""

    started: float
    model: str | None = None
    usage: dict[str, int] | None = None


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


# --------------------------------------------------------------------------------------------
# Middlewares


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except APIError as err:
        return error_response(err)
    except web.HTTPException as exc:
        return error_response(_from_http_exception(request, exc))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(APIError("The server had an error while processing your request."))


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> APIError:
    if exc.status == 404:
        return UnknownURL(
            f"Unknown request URL: {request.method} {request.path}. "
            "Please check the URL; the API is served under /v1."
        )
    if exc.status == 405:
        return MethodNotAllowed(f"Method {request.method} is not allowed for {request.path}.")
    if exc.status == 413:
        limit = request.app[SETTINGS].max_body_size
        return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    err = InvalidRequest(exc.reason or "Bad request.") if exc.status < 500 else APIError(exc.reason)
    err.status = exc.status
    return err


def auth_middleware(keys: Iterable[str]) -> Callable[[web.Request, Handler], Awaitable[Any]]:
    expected = [key.encode() for key in keys]

    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise Unauthorized(
                "Missing API key. Send it in the Authorization header as 'Bearer <key>'."
            )
        given = token.strip().encode()
        matched = False
        for key in expected:  # every key is compared, so timing tells nothing
            matched |= hmac.compare_digest(given, key)
        if scheme.lower() != "bearer" or not matched:
            raise Unauthorized("Incorrect API key provided.")
        return await handler(request)

    return check_key


def cors_middleware(patterns: tuple[str, ...]) -> Callable[[web.Request, Handler], Awaitable[Any]]:
    """Answers preflights for allowed origins; `_cors_headers` marks the real responses."""

    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if (
            request.method != "OPTIONS"
            or not origin
            or "Access-Control-Request-Method" not in request.headers
        ):
            return await handler(request)
        if not origin_allowed(origin, patterns):
            return error_response(PermissionDenied(f"Origin {origin!r} is not allowed."))
        asked = request.headers.get("Access-Control-Request-Headers", "authorization, content-type")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": asked,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )

    return preflight


def origin_allowed(origin: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(origin, pattern) for pattern in patterns)


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    origin = request.headers.get("Origin")
    if origin and origin_allowed(origin, request.app[SETTINGS].cors_origins):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.headers["Vary"] = "Origin"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Metrics and the access log: one line per request, with model, status, time and tokens."""
    started = time.perf_counter()
    exchange = request[EXCHANGE] = Exchange(started)
    status = 499  # the client went away unless we learn otherwise
    try:
        response = await handler(request)
        status = response.status
        return response
    except APIError as err:
        status = err.status
        if status >= 500:
            request.app[METRICS].upstream_error(err.code)
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        status = 500
        raise
    finally:
        elapsed = time.perf_counter() - started
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unknown"
        model = exchange.model
        usage = exchange.usage
        metrics = request.app[METRICS]
        metrics.request(route, model, status, elapsed)
        if usage:
            metrics.usage(model, usage["prompt_tokens"], usage["completion_tokens"])
        if request.app[SETTINGS].access_log and access.isEnabledFor(logging.INFO):
            access.info(
                "%s %s %s %d %.1fms%s",
                request.method,
                request.path,
                model or "-",
                status,
                elapsed * 1000,
                f" tokens={usage['prompt_tokens']}+{usage['completion_tokens']}" if usage else "",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "model": model,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "prompt_tokens": usage["prompt_tokens"] if usage else None,
                    "completion_tokens": usage["completion_tokens"] if usage else None,
                },
            )


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


LIMITER = web.AppKey("limiter", Limiter)


# --------------------------------------------------------------------------------------------
# Handlers


@dataclass(frozen=True, slots=True)
class Surface:
    """An OpenAI endpoint that generates text, and the Ollama endpoint behind it."""

    path: str
    id_prefix: str
    stream: Callable[..., ChoiceStream]
    complete: Callable[..., dict[str, Any]]


CHAT = Surface("/api/chat", "chatcmpl-", chat.ChatStream, chat.completion)
TEXT = Surface("/api/generate", "cmpl-", completions.CompletionStream, completions.completion)
WARNING_HEADER = "X-Oai2ollama-Warning"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    req = chat.parse_request(await read_json(request), allow_image_urls=settings.allow_image_urls)
    request[EXCHANGE].model = req.model
    if req.remote_images:
        await request.app[IMAGES].fill(req)
    return await generate(request, CHAT, req, req.text_chars)


async def text_completions(request: web.Request) -> web.StreamResponse:
    req = completions.parse_request(await read_json(request))
    request[EXCHANGE].model = req.model
    return await generate(request, TEXT, req, req.text_chars)


async def generate(
    request: web.Request, surface: Surface, req: Any, chars: int
) -> web.StreamResponse:
    """The shared flow of chat and text completions: one or n generations, whole or streamed."""
    app = request.app
    async with app[LIMITER].slot():
        target = await app[CATALOG].prepare(req.payload, req.model)
        headers = truncation_warning(req.payload, chars, target)
        ollama = app[OLLAMA]
        completion_id, created = new_id(surface.id_prefix), int(time.time())
        if not req.stream:
            answers = await gather_all(
                ollama.post(surface.path, req.payload_for(i), model=target)
                for i in range(req.choices)
            )
            answer = surface.complete(answers, req, completion_id=completion_id, created=created)
            request[EXCHANGE].usage = answer["usage"]
            headers = headers or context_full_warning(req.payload, answers, target)
            return json_response(answer, headers=headers)

        translators = [surface.stream(completion_id, created, req, i) for i in range(req.choices)]
        if req.choices == 1:
            events = one_stream(ollama, surface.path, req.payload_for(0), target, translators[0])
        else:
            events = merged_streams(ollama, surface.path, req, target, translators)
        try:
            return await stream_answer(request, events, headers, surface.path)
        finally:
            if all(t.done for t in translators):
                prompt = translators[0].usage["prompt_tokens"]
                generated = sum(t.usage["completion_tokens"] for t in translators)
                request[EXCHANGE].usage = common.usage(prompt, generated)


async def stream_answer(
    request: web.Request,
    events: AsyncGenerator[bytes, None],
    headers: dict[str, str] | None,
    route: str,
    last_event: Callable[[APIError], bytes] = sse.error_event,
) -> web.StreamResponse:
    """Answer with SSE ``events``, counted in the metrics (open streams, first token, errors)."""
    app = request.app
    metrics = app[METRICS]
    started = request[EXCHANGE].started

    def first_token() -> None:
        metrics.time_to_first_token(route, time.perf_counter() - started)

    metrics.open_streams += 1
    try:
        return await sse.respond(
            request,
            events,
            headers=headers,
            interval=app[SETTINGS].keepalive_interval,
            streams=app[STREAMS],
            on_first_token=first_token,
            on_error=lambda err: metrics.upstream_error(err.code),
            last_event=last_event,
        )
    finally:
        metrics.open_streams -= 1


def truncation_warning(payload: dict[str, Any], chars: int, model: str) -> dict[str, str] | None:
    num_ctx = (payload.get("options") or {}).get("num_ctx")
    if not policy.likely_truncated(chars, num_ctx):
        return None
    log.warning("prompt of %d characters likely exceeds num_ctx=%s for %s", chars, num_ctx, model)
    return {
        WARNING_HEADER: f"prompt-truncated; num_ctx={num_ctx}; chars={chars}; "
        "Ollama keeps the system prompt and the newest messages and drops the rest"
    }


def context_full_warning(
    payload: dict[str, Any], answers: list[dict[str, Any]], model: str
) -> dict[str, str] | None:
    """After the fact: Ollama evaluated a prompt that filled the context, so it may have dropped
    the oldest messages to make it fit."""
    num_ctx = (payload.get("options") or {}).get("num_ctx")
    evaluated = max((a.get("prompt_eval_count") or 0 for a in answers), default=0)
    if not policy.context_full(evaluated, num_ctx):
        return None
    log.warning("prompt of %d tokens filled num_ctx=%s for %s", evaluated, num_ctx, model)
    return {
        WARNING_HEADER: f"context-full; num_ctx={num_ctx}; prompt_tokens={evaluated}; "
        "Ollama may have dropped the oldest messages to make the prompt fit"
    }


async def embeddings_handler(request: web.Request) -> web.Response:
    req = embeddings.parse_request(await read_json(request))
    request[EXCHANGE].model = req.model
    app = request.app
    async with app[LIMITER].slot():
        target = await app[CATALOG].prepare(req.payload, req.model)
        headers = truncation_warning(req.payload, req.text_chars, target)
        answer = await app[OLLAMA].post("/api/embed", req.payload, model=target)
    out = embeddings.response(answer, req)
    request[EXCHANGE].usage = common.usage(out["usage"]["prompt_tokens"], 0)
    return json_response(out, headers=headers)


async def gather_all(coros: Iterable[Awaitable[Any]]) -> list[Any]:
    """Run concurrently; the first failure cancels the others and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


async def translate(
    translator: Any, batches: AsyncIterator[list[dict[str, Any]]]
) -> AsyncIterator[bytes]:
    """Each line is translated as it arrives; the events of one network read go out as one
    write."""
    async for batch in batches:
        events = b""
        try:
            for line in batch:
                if not translator.done:
                    events += translator.feed(line)
        finally:
            # What was translated before a failing line still goes out, ahead of the error.
            if events:
                yield events
    if not translator.done:
        raise UpstreamError("Ollama ended the stream before the answer was complete.")


async def one_stream(
    ollama: Ollama, path: str, payload: dict[str, Any], target: str, translator: Any
) -> AsyncGenerator[bytes, None]:
    """One upstream stream as SSE events: the opening event once Ollama answers, then the rest."""
    async with ollama.stream(path, payload, model=target) as lines:
        yield translator.start()
        async for events in translate(translator, lines):
            yield events


async def merged_streams(
    ollama: Ollama, path: str, req: Any, target: str, translators: list[Any]
) -> AsyncGenerator[bytes, None]:
    """Several choices: one upstream stream each, their events interleaved as they come."""
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()

    async def pump(i: int) -> None:
        try:
            async for events in one_stream(
                ollama, path, req.payload_for(i), target, translators[i]
            ):
                queue.put_nowait(events)
            queue.put_nowait(None)
        except Exception as exc:
            queue.put_nowait(exc)

    tasks = [asyncio.ensure_future(pump(i)) for i in range(len(translators))]
    try:
        open_choices = len(translators)
        while open_choices:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                open_choices -= 1
            else:
                yield item
        prompt = translators[0].usage["prompt_tokens"]
        generated = sum(t.usage["completion_tokens"] for t in translators)
        yield translators[0].end(common.usage(prompt, generated))
    finally:
        for task in tasks:
            task.cancel()


async def create_response(request: web.Request) -> web.StreamResponse:
    """``POST /v1/responses``: the Responses API, translated onto ``/api/chat``."""
    app = request.app
    settings = app[SETTINGS]
    store = app[RESPONSES]
    body = await read_json(request)
    previous = body.get("previous_response_id") if isinstance(body, dict) else None
    history = None
    if isinstance(previous, str) and store.enabled:
        entry = store.get(previous)
        if entry is None:
            raise InvalidRequest(
                f"Previous response with id '{previous}' not found (responses are kept in "
                "memory, and only the newest ones).",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        history = entry.items
    req = responses.parse_request(
        body,
        history=history,
        allow_image_urls=settings.allow_image_urls,
        store_available=store.enabled,
    )
    exchange = request[EXCHANGE]
    exchange.model = req.model
    if req.chat.remote_images:
        await app[IMAGES].fill(req.chat)
    async with app[LIMITER].slot():
        payload = req.chat.payload
        target = await app[CATALOG].prepare(payload, req.model)
        headers = truncation_warning(payload, req.chat.text_chars, target)
        ollama = app[OLLAMA]
        response_id, created_at = new_id("resp_"), int(time.time())
        if not req.stream:
            answer = await ollama.post("/api/chat", payload, model=target)
            out = responses.response(answer, req, response_id, created_at)
            if req.store:
                store.put(out, req.items)
            exchange.usage = common.usage_from(answer)
            return json_response(out, headers=headers)
        translator = responses.ResponsesStream(req, response_id, created_at)
        events = one_stream(ollama, "/api/chat", payload, target, translator)
        answered = await stream_answer(request, events, headers, "/api/chat", translator.failed)
        if translator.done and translator.final is not None:
            exchange.usage = translator.usage
            if req.store:
                store.put(translator.final, req.items)
        return answered


async def retrieve_response(request: web.Request) -> web.Response:
    entry = request.app[RESPONSES].get(request.match_info["id"])
    if entry is None:
        raise _response_not_found(request.match_info["id"])
    return json_response(entry.response)


async def delete_response(request: web.Request) -> web.Response:
    response_id = request.match_info["id"]
    if not request.app[RESPONSES].delete(response_id):
        raise _response_not_found(response_id)
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


def _response_not_found(response_id: str) -> APIError:
    return NotFound(
        f"Response with id '{response_id}' not found (responses are kept in memory, and only "
        "the newest ones).",
        param="response_id",
        code="response_not_found",
    )


async def list_models(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    tags = await catalog.tags(fresh=True)
    aliases = catalog.policy.listed_aliases()
    return json_response(models.model_list(tags, aliases, catalog.cached_show))


async def retrieve_model(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    model_id = request.match_info["model"]
    tags = await catalog.tags(fresh=True)
    target = model_id
    if catalog.policy.alias(model_id) is not None or models.entry_for(tags, model_id) is None:
        target = await catalog.route(model_id)
    entry = models.entry_for(tags, target)
    if entry is None:
        raise models.not_found(model_id)
    answer = models.model_object(entry, model_id, await catalog.show(target))
    if target != model_id:
        answer["alias_for"] = target
    return json_response(answer)


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


# --------------------------------------------------------------------------------------------
# Application


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
        middlewares.append(auth_middleware(settings.api_keys))
    app = web.Application(client_max_size=settings.max_body_size, middlewares=middlewares)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[STREAMS] = sse.Streams()
    app[LIMITER] = Limiter(settings.max_concurrency, settings.max_queue, app[METRICS])
    app[OLLAMA] = Ollama(settings)
    app[CATALOG] = Catalog(app[OLLAMA], settings.policy)
    app[RESPONSES] = ResponseStore(settings.responses_store)
    app.cleanup_ctx.append(_ollama_lifetime)
    if settings.allow_image_urls:
        app[IMAGES] = ImageFetcher(settings)
        app.cleanup_ctx.append(_images_lifetime)
    if settings.cors_origins:
        app.on_response_prepare.append(_cors_headers)
    app.on_shutdown.append(_drain)

    app.router.add_get("/healthz", healthz, allow_head=True)
    app.router.add_get("/readyz", readyz, allow_head=True)
    app.router.add_get("/metrics", metrics_handler)
    # Routes answer with and without the /v1 prefix: some clients are configured without it.
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_post(f"{prefix}/completions", text_completions)
        app.router.add_post(f"{prefix}/embeddings", embeddings_handler)
        app.router.add_post(f"{prefix}/responses", create_response)
        app.router.add_get(f"{prefix}/responses/{{id}}", retrieve_response)
        app.router.add_delete(f"{prefix}/responses/{{id}}", delete_response)
        app.router.add_get(f"{prefix}/models", list_models)
        app.router.add_get(f"{prefix}/models/{{model:.+}}", retrieve_model)
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


async def _images_lifetime(app: web.Application) -> AsyncIterator[None]:
    await app[IMAGES].start()
    yield
    await app[IMAGES].close()
