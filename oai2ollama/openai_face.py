"""OpenAI's face: the ``/v1`` routes, translated onto Ollama's native API.

Handlers stay thin — parse, translate, call Ollama, translate back, write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import policy, sse
from .errors import APIError, InvalidRequest, NotFound, UpstreamError
from .state import (
    CATALOG,
    EXCHANGE,
    IMAGES,
    LIMITER,
    METRICS,
    OLLAMA,
    RESPONSES,
    SETTINGS,
    STREAMS,
    json_response,
    read_json,
)
from .store import ResponseStore
from .translate import chat, completions, embeddings, models, responses
from .translate.stream import ChoiceStream, new_id, usage, usage_from
from .upstream import Ollama

log = logging.getLogger("oai2ollama")


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
    req = chat.parse_request(
        await read_json(request),
        allow_image_urls=settings.allow_image_urls,
        max_image_urls=settings.max_image_urls,
    )
    request[EXCHANGE].model = req.model
    if req.needs:
        await request.app[CATALOG].require(req.model, req.needs)
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
        # Images are fetched inside the slot, so a full server fetches nothing.
        if isinstance(req, chat.ChatRequest) and req.remote_images:
            await app[IMAGES].fill(req)
        target = request[EXCHANGE].target = await app[CATALOG].prepare(req.payload, req.model)
        headers = truncation_warning(req.payload, chars, target)
        ollama = app[OLLAMA]
        completion_id, created = new_id(surface.id_prefix), int(time.time())
        if not req.stream:
            if req.choices == 1:  # no Task and no gather for the common case
                answers = [await ollama.post(surface.path, req.payload_for(0), model=target)]
            else:
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
            return await stream_answer(request, events, headers)
        finally:
            if all(t.done for t in translators):
                prompt = translators[0].usage["prompt_tokens"]
                generated = sum(t.usage["completion_tokens"] for t in translators)
                request[EXCHANGE].usage = usage(prompt, generated)


async def stream_answer(
    request: web.Request,
    events: AsyncGenerator[bytes, None],
    headers: dict[str, str] | None,
    *,
    last_event: Callable[[APIError], bytes] = sse.error_event,
) -> web.StreamResponse:
    """Answer with SSE ``events``, counted in the metrics (open streams, first token, errors)."""
    app = request.app
    metrics = app[METRICS]
    started = request[EXCHANGE].started
    route = request.match_info.route.resource.canonical  # type: ignore[union-attr]

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


def add_warning(headers: dict[str, str] | None, warning: str) -> dict[str, str]:
    """One more warning in the header: several are a comma-separated list, as for any HTTP
    header that may repeat (each warning's own parts are separated by semicolons)."""
    headers = dict(headers or {})
    earlier = headers.get(WARNING_HEADER)
    headers[WARNING_HEADER] = f"{earlier}, {warning}" if earlier else warning
    return headers


def tools_dropped_warning(kinds: Iterable[str]) -> str:
    log.info("left out hosted tools: %s", " ".join(kinds))
    return (
        f"tools-ignored; types={' '.join(kinds)}; "
        "hosted tools cannot run on a local model and were left out"
    )


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
        target = request[EXCHANGE].target = await app[CATALOG].prepare(req.payload, req.model)
        headers = truncation_warning(req.payload, req.text_chars, target)
        answer = await app[OLLAMA].post("/api/embed", req.payload, model=target)
    out = embeddings.response(answer, req)
    request[EXCHANGE].usage = usage(out["usage"]["prompt_tokens"], 0)
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
    feed = translator.feed
    async for batch in batches:
        events: list[bytes] = []
        try:
            for line in batch:
                if translator.done:
                    break
                events.append(feed(line))
        finally:
            # What was translated before a failing line still goes out, ahead of the error.
            data = b"".join(events)
            if data:
                yield data
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
        yield translators[0].end(usage(prompt, generated))
    finally:
        for task in tasks:
            task.cancel()


async def create_response(request: web.Request) -> web.StreamResponse:
    """``POST /v1/responses``: the Responses API, translated onto ``/api/chat``."""
    app = request.app
    settings = app[SETTINGS]
    store = app[RESPONSES]
    exchange = request[EXCHANGE]
    body = await read_json(request)
    previous = body.get("previous_response_id") if isinstance(body, dict) else None
    history = None
    if isinstance(previous, str) and store.enabled:
        entry = await store.get(exchange.tenant, previous)
        if entry is None:
            raise InvalidRequest(
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        history = entry.items
    req = responses.parse_request(
        body,
        history=history,
        allow_image_urls=settings.allow_image_urls,
        max_image_urls=settings.max_image_urls,
        store_available=store.enabled,
        refuse_hosted_tools=settings.refuse_hosted_tools,
    )
    exchange.model = req.model
    await app[CATALOG].require(req.model, req.chat.needs)
    if req.store:  # what cannot be stored is refused before anything is generated
        store.check_size(req.items)
        if history is None:
            await store.ready()
    async with app[LIMITER].slot():
        if req.chat.remote_images:
            await app[IMAGES].fill(req.chat)
        payload = req.chat.payload
        target = exchange.target = await app[CATALOG].prepare(payload, req.model)
        headers = truncation_warning(payload, req.chat.text_chars, target)
        if req.tools.dropped:
            headers = add_warning(headers, tools_dropped_warning(req.tools.dropped))
        ollama = app[OLLAMA]
        response_id, created_at = new_id("resp_"), int(time.time())
        if not req.stream:
            answer = await ollama.post("/api/chat", payload, model=target)
            out = responses.response(answer, req, response_id, created_at)
            if req.store:
                await store.put(exchange.tenant, out, req.items)
            exchange.usage = usage_from(answer)
            return json_response(out, headers=headers)
        translator = responses.ResponsesStream(req, response_id, created_at)
        events = one_stream(ollama, "/api/chat", payload, target, translator)
        if req.store:
            events = storing(events, translator, store, exchange.tenant, req.items)
        answered = await stream_answer(request, events, headers, last_event=translator.failed)
        if translator.done and translator.final is not None:
            exchange.usage = translator.usage
        return answered


async def storing(
    events: AsyncGenerator[bytes, None],
    translator: responses.ResponsesStream,
    store: ResponseStore,
    tenant: str,
    items: list[dict[str, Any]],
) -> AsyncGenerator[bytes, None]:
    """Store the finished response before its last event goes out, so that a client that has
    seen ``response.completed`` can continue from it (on any replica); a store that fails then
    turns the last event into ``response.failed``."""
    stored = False
    try:
        async for chunk in events:
            if not stored and translator.done and translator.final is not None:
                await store.put(tenant, translator.final, items)
                stored = True
            yield chunk
    finally:
        await events.aclose()


async def retrieve_response(request: web.Request) -> web.Response:
    response_id = request.match_info["id"]
    entry = await request.app[RESPONSES].get(request[EXCHANGE].tenant, response_id)
    if entry is None:
        raise _response_not_found(response_id)
    return json_response(entry.response)


async def delete_response(request: web.Request) -> web.Response:
    response_id = request.match_info["id"]
    if not await request.app[RESPONSES].delete(request[EXCHANGE].tenant, response_id):
        raise _response_not_found(response_id)
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


def _response_not_found(response_id: str) -> APIError:
    return NotFound(
        f"Response with id '{response_id}' not found.",
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


def add_routes(app: web.Application) -> None:
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
