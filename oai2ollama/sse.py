"""Writing server-sent events: keep-alives while Ollama is silent, errors as a last event, and a
registry of open streams so a shutdown can end them properly.

A stream is committed (status 200 sent) only when Ollama has started answering, or when the
keep-alive interval passes first; until then an upstream error is still a plain HTTP error with
its own status. After that, every failure is one ``data: {"error": ...}`` event and the stream
ends without ``[DONE]``, so no client mistakes a cut answer for a whole one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable

import orjson
from aiohttp import web

from .errors import APIError
from .exchange import EXCHANGE

log = logging.getLogger("oai2ollama")

KEEPALIVE = b": keep-alive\n\n"
HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def error_event(err: APIError) -> bytes:
    return b"data: " + orjson.dumps(err.body()) + b"\n\n"


class Streams:
    """The streams open now, for shutdown and the open-streams gauge."""

    def __init__(self) -> None:
        self.open: set[Stream] = set()

    async def end_all(self, err: APIError) -> None:
        for stream in list(self.open):
            await stream.abort(err)


class Stream:
    """One SSE response: writes events, and a keep-alive comment whenever a whole interval
    passed without one (no cost per event: a ticker checks a flag)."""

    def __init__(
        self,
        request: web.Request,
        headers: dict[str, str] | None,
        interval: float,
        streams: Streams,
        last_event: Callable[[APIError], bytes] = error_event,
    ) -> None:
        self._request = request
        self._last_event = last_event
        self._exchange = request.get(EXCHANGE)
        all_headers = {**HEADERS, **headers} if headers else dict(HEADERS)
        if self._exchange is not None:
            all_headers["X-Request-Id"] = self._exchange.request_id
        self._response = web.StreamResponse(headers=all_headers)
        self._interval = interval
        self._streams = streams
        self._active = False
        self._ticker: asyncio.Task[None] | None = None
        self._owner: asyncio.Task[object] | None = None
        self.closed = False

    @property
    def response(self) -> web.StreamResponse:
        return self._response

    async def open(self) -> None:
        await self._response.prepare(self._request)
        self._owner = asyncio.current_task()
        self._streams.open.add(self)
        if self._exchange is not None:
            self._exchange.stream = True
        if self._interval > 0:
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        with contextlib.suppress(Exception):
            while not self.closed:
                await asyncio.sleep(self._interval)
                if not self._active and not self.closed:
                    await self._response.write(KEEPALIVE)
                self._active = False

    async def send(self, data: bytes) -> None:
        if data:
            self._active = True
            await self._response.write(data)

    async def close(self) -> None:
        """End the stream normally (after ``[DONE]`` or an error event)."""
        if self.closed:
            return
        self._stop()
        with contextlib.suppress(ConnectionResetError):
            await self._response.write_eof()

    async def abort(self, err: APIError) -> None:
        """End the stream from outside (shutdown): an error event, then stop its handler."""
        if self.closed:
            return
        self._stop()
        self.ended_with(err)
        with contextlib.suppress(Exception):
            await self._response.write(self._last_event(err))
            await self._response.write_eof()
        if self._owner is not None and self._owner is not asyncio.current_task():
            self._owner.cancel()

    def ended_with(self, err: APIError) -> None:
        """Record that the client got ``err`` as the stream's last event."""
        if self._exchange is not None:
            self._exchange.status = err.status
            self._exchange.error = err.code or err.type

    def _stop(self) -> None:
        self.closed = True
        self._streams.open.discard(self)
        if self._ticker is not None:
            self._ticker.cancel()


async def respond(
    request: web.Request,
    events: AsyncGenerator[bytes, None],
    *,
    headers: dict[str, str] | None,
    interval: float,
    streams: Streams,
    on_first_token: Callable[[], None] | None = None,
    on_error: Callable[[APIError], None] | None = None,
    last_event: Callable[[APIError], bytes] = error_event,
) -> web.StreamResponse:
    """Answer with the SSE ``events``; see the module's note for when errors are HTTP errors."""
    first = asyncio.ensure_future(anext(events))
    try:
        await asyncio.wait({first}, timeout=interval or None)
    except BaseException:
        await _discard(first, events)
        raise
    if first.done() and first.exception() is not None:
        await events.aclose()
        raise first.exception()  # type: ignore[misc]

    stream = Stream(request, headers, interval, streams, last_event)
    try:
        await stream.open()
        try:
            await stream.send(await first)  # keep-alives flow while this waits
            if on_first_token is not None:
                async for data in events:  # the first event that carries generated text
                    on_first_token()
                    await stream.send(data)
                    break
            write = stream.response.write
            async for data in events:  # `send`, inlined: this runs for every network read
                if data:
                    stream._active = True
                    await write(data)
        except APIError as err:
            if not stream.closed:
                log.warning("stream ended with an error: %s", err.message)
                if on_error is not None:
                    on_error(err)
                stream.ended_with(err)
                await stream.send(last_event(err))
        await stream.close()
    except ConnectionResetError:
        # The client went away; closing the events closes the upstream request, so Ollama stops.
        log.debug("client disconnected from %s", request.path)
        if stream._exchange is not None and stream._exchange.status is None:
            stream._exchange.status = 499
    finally:
        stream._stop()
        await _discard(first, events)
    return stream.response


async def _discard(first: asyncio.Future[bytes], events: AsyncGenerator[bytes, None]) -> None:
    if not first.done():
        first.cancel()
    with contextlib.suppress(BaseException):
        await first
    await events.aclose()
