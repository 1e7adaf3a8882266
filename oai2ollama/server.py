"""The HTTP side: application factory, routes, middlewares, SSE writing.

Handlers stay thin — parse, translate, call Ollama, translate back, write — and every failure
becomes an OpenAI error object in :func:`error_middleware`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from . import __version__, policy
from .catalog import Catalog
from .config import Settings
from .errors import (
    APIError,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    Unauthorized,
    UnknownURL,
    UpstreamError,
)
from .images import ImageFetcher
from .translate import chat, common, completions, embeddings, models
from .translate.common import ChoiceStream, new_id
from .upstream import Ollama

log = logging.getLogger("oai2ollama")

SETTINGS = web.AppKey("settings", Settings)
OLLAMA = web.AppKey("ollama", Ollama)
IMAGES = web.AppKey("images", ImageFetcher)
CATALOG = web.AppKey("catalog", Catalog)

# Paths that answer without the shim's API key: liveness and readiness probes.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, headers=headers, content_type="application/json"
    )


def error_response(err: APIError) -> web.Response:
    return json_response(err.body(), err.status, err.headers or None)


def sse_error(err: APIError) -> bytes:
    return b"data: " + orjson.dumps(err.body()) + b"\n\n"


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
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


def auth_middleware(api_key: str) -> Callable[[web.Request, Handler], Awaitable[Any]]:
    expected = api_key.encode()

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
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise Unauthorized("Incorrect API key provided.")
        return await handler(request)

    return check_key


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
    if req.remote_images:
        await request.app[IMAGES].fill(req)
    return await generate(request, CHAT, req, req.text_chars)


async def text_completions(request: web.Request) -> web.StreamResponse:
    req = completions.parse_request(await read_json(request))
    return await generate(request, TEXT, req, req.text_chars)


async def generate(
    request: web.Request, surface: Surface, req: Any, chars: int
) -> web.StreamResponse:
    """The shared flow of chat and text completions: one or n generations, whole or streamed."""
    target = await request.app[CATALOG].prepare(req.payload, req.model)
    headers = truncation_warning(req.payload, chars, target)
    ollama = request.app[OLLAMA]
    completion_id, created = new_id(surface.id_prefix), int(time.time())
    if not req.stream:
        answers = await gather_all(
            ollama.post(surface.path, req.payload_for(i), model=target) for i in range(req.choices)
        )
        answer = surface.complete(answers, req, completion_id=completion_id, created=created)
        return json_response(answer, headers=headers)
    translators = [surface.stream(completion_id, created, req, i) for i in range(req.choices)]
    if req.choices > 1:
        return await stream_choices(request, surface, req, target, translators, headers)
    [translator] = translators
    async with ollama.stream(surface.path, req.payload_for(0), model=target) as lines:
        events = translate(translator, lines)
        return await write_stream(request, translator.start(), events, headers)


def truncation_warning(payload: dict[str, Any], chars: int, model: str) -> dict[str, str] | None:
    num_ctx = (payload.get("options") or {}).get("num_ctx")
    if not policy.likely_truncated(chars, num_ctx):
        return None
    log.warning("prompt of %d characters likely exceeds num_ctx=%s for %s", chars, num_ctx, model)
    return {
        WARNING_HEADER: f"prompt-truncated; num_ctx={num_ctx}; chars={chars}; "
        "Ollama keeps the system prompt and the newest messages and drops the rest"
    }


async def embeddings_handler(request: web.Request) -> web.Response:
    req = embeddings.parse_request(await read_json(request))
    target = await request.app[CATALOG].prepare(req.payload, req.model)
    headers = truncation_warning(req.payload, req.text_chars, target)
    answer = await request.app[OLLAMA].post("/api/embed", req.payload, model=target)
    return json_response(embeddings.response(answer, req), headers=headers)


async def gather_all(coros: Iterable[Awaitable[Any]]) -> list[Any]:
    """Run concurrently; the first failure cancels the others and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


async def translate(translator: Any, lines: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for line in lines:
        if not translator.done:
            events = translator.feed(line)
            if events:
                yield events
    if not translator.done:
        raise UpstreamError("Ollama ended the stream before the answer was complete.")


async def write_stream(
    request: web.Request,
    first: bytes,
    events: AsyncGenerator[bytes, None],
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Write SSE events as they come; a failure ends the stream with an error event."""
    response = web.StreamResponse(headers={**SSE_HEADERS, **headers} if headers else SSE_HEADERS)
    await response.prepare(request)
    try:
        if first:
            await response.write(first)
        try:
            async for data in events:
                await response.write(data)
        except APIError as err:
            log.warning("stream ended with an error: %s", err.message)
            await response.write(sse_error(err))
        await response.write_eof()
    except ConnectionResetError:
        # The client went away; leaving here closes the upstream request, so Ollama stops.
        log.debug("client disconnected from %s", request.path)
    finally:
        await events.aclose()
    return response


async def stream_choices(
    request: web.Request,
    surface: Surface,
    req: Any,
    target: str,
    translators: list[Any],
    headers: dict[str, str] | None,
) -> web.StreamResponse:
    """Several choices streamed: one upstream stream each, their chunks interleaved by index."""
    ollama = request.app[OLLAMA]
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()

    async def pump(i: int) -> None:
        translator = translators[i]
        try:
            async with ollama.stream(surface.path, req.payload_for(i), model=target) as lines:
                queue.put_nowait(translator.start())
                async for events in translate(translator, lines):
                    queue.put_nowait(events)
            queue.put_nowait(None)
        except Exception as exc:
            queue.put_nowait(exc)

    tasks = [asyncio.ensure_future(pump(i)) for i in range(len(translators))]

    async def merged() -> AsyncGenerator[bytes, None]:
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

    events = merged()
    try:
        # Wait for the first event before answering, so an early failure (an unknown model)
        # is still a plain HTTP error with its own status.
        first = await anext(events)
    except BaseException:
        await events.aclose()
        raise
    return await write_stream(request, first, events, headers)


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


def create_app(settings: Settings) -> web.Application:
    middlewares: list[Any] = [error_middleware]
    if settings.api_key:
        middlewares.append(auth_middleware(settings.api_key))
    app = web.Application(client_max_size=settings.max_body_size, middlewares=middlewares)
    app[SETTINGS] = settings
    app[OLLAMA] = Ollama(settings)
    app[CATALOG] = Catalog(app[OLLAMA], settings.policy)
    app.cleanup_ctx.append(_ollama_lifetime)
    if settings.allow_image_urls:
        app[IMAGES] = ImageFetcher(settings)
        app.cleanup_ctx.append(_images_lifetime)

    app.router.add_get("/healthz", healthz, allow_head=True)
    app.router.add_get("/readyz", readyz, allow_head=True)
    # Routes answer with and without the /v1 prefix: some clients are configured without it.
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_post(f"{prefix}/completions", text_completions)
        app.router.add_post(f"{prefix}/embeddings", embeddings_handler)
        app.router.add_get(f"{prefix}/models", list_models)
        app.router.add_get(f"{prefix}/models/{{model:.+}}", retrieve_model)
    return app


async def start(settings: Settings, access_log: logging.Logger | None = None) -> web.AppRunner:
    """Start serving ``settings`` on its host and port; the caller owns ``runner.cleanup()``.

    ``handler_cancellation``: a client that goes away cancels its handler, and with it the
    upstream request, so Ollama stops generating for nobody.
    """
    runner = web.AppRunner(create_app(settings), handler_cancellation=True, access_log=access_log)
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
