"""The connection to Ollama: one pooled session, JSON and NDJSON helpers, errors mapped once.

Nothing from the client's request reaches Ollama but the body we build: no ``Authorization``,
``Cookie``, ``Host`` or ``Origin`` header is ever copied.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from yarl import URL

from . import __version__
from .config import Settings
from .errors import (
    APIError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    from_ollama_body,
)

_CONNECT_TIMEOUT = getattr(aiohttp, "ConnectionTimeoutError", ())
_HEADERS = {"Content-Type": "application/json", "User-Agent": f"oai2ollama/{__version__}"}


class Ollama:
    """Client for Ollama's native API, sharing one connection pool for the life of the server."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.ollama_url.rstrip("/")
        # Until the first byte, a read may wait as long as a model load takes; after it, the
        # idle timeout holds between chunks (see `stream`).
        self._timeout = aiohttp.ClientTimeout(
            total=settings.request_timeout or None,
            connect=settings.connect_timeout or None,
            sock_read=settings.first_byte_timeout or None,
        )
        self._idle = settings.idle_timeout or None
        self._max_line = settings.max_line_size
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}

    def _url(self, path: str) -> URL:
        """Ollama's URL for ``path``, parsed once: the client would parse a string every time."""
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= 64:  # paths with a variable part (blobs) are not kept forever
                self._urls.clear()
            url = self._urls[path] = URL(self.url + path)
        return url

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=60, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers=_HEADERS,
            auto_decompress=True,
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Ollama client used before start()")
        return self._session

    async def get(self, path: str, *, limit: float | None = None) -> Any:
        """GET a JSON document; ``limit`` caps the whole request in seconds."""
        return await self._json("GET", path, None, None, limit)

    def post(
        self, path: str, payload: dict[str, Any], *, model: str | None = None
    ) -> Coroutine[Any, Any, Any]:
        """POST a JSON document and read the JSON answer (the coroutine itself: no extra await
        on every generation)."""
        return self._json("POST", path, payload, model, None)

    async def _json(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        model: str | None,
        limit: float | None,
    ) -> Any:
        data = orjson.dumps(payload) if payload is not None else None
        kwargs: dict[str, Any] = {"data": data}
        if limit is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=limit)
        try:
            async with self.session.request(method, self._url(path), **kwargs) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise from_ollama_body(
                        resp.status, body, model, resp.headers.get("Retry-After")
                    )
        except APIError:
            raise
        except Exception as exc:
            raise self._failure(exc) from exc
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"Ollama at {self.url} answered {path} with a body that is not JSON."
            ) from None

    @asynccontextmanager
    async def stream(
        self, path: str, payload: dict[str, Any], *, model: str | None = None
    ) -> AsyncIterator[AsyncIterator[list[dict[str, Any]]]]:
        """POST and yield the answer's NDJSON objects as they arrive, a batch per network read.

        An error status before the first byte is raised here, so the caller can still answer
        with a proper HTTP status; errors after that are raised by the iterator.
        """
        async with self.exchange("POST", path, orjson.dumps(payload)) as resp:
            if resp.status != 200:
                body = await self.read(resp)
                raise from_ollama_body(resp.status, body, model, resp.headers.get("Retry-After"))
            yield self._batches(resp)

    @asynccontextmanager
    async def exchange(
        self, method: str, path: str, data: Any = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send ``data`` (bytes, or a stream of them) and yield Ollama's response, whatever its
        status, for answers passed through as they are. Once the headers are in, the idle
        timeout holds between reads."""
        try:
            resp = await self.session.request(method, self._url(path), data=data)
        except Exception as exc:
            raise self._failure(exc) from exc
        try:
            if resp.connection is not None:
                protocol = resp.connection.protocol
                if protocol is not None:
                    protocol.read_timeout = self._idle
                    protocol.start_timeout()
            yield resp
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                # Closing the connection is how Ollama learns to stop generating.
                resp.close()

    async def read(self, resp: aiohttp.ClientResponse) -> bytes:
        """The whole body of ``resp``, transport failures mapped."""
        try:
            return await resp.read()
        except Exception as exc:
            raise self._failure(exc) from exc

    def _batches(self, resp: aiohttp.ClientResponse) -> AsyncIterator[list[dict[str, Any]]]:
        """The NDJSON objects of each network read, in order."""
        return self.lines(resp, parse_line)

    async def lines(
        self, resp: aiohttp.ClientResponse, parse: Callable[[bytes], Any] | None = None
    ) -> AsyncIterator[list[Any]]:
        """The NDJSON lines of each network read, in order, without their newlines (each put
        through ``parse`` when given: one generator rather than two on every read). A line split
        across reads is kept until its end arrives; nothing else waits.

        Each byte is copied a bounded number of times however many reads a line spans, and a
        line longer than ``max_line_size`` ends the answer with an error instead of taking the
        memory and CPU everyone shares."""
        pending = bytearray()  # the start of a line whose end has not arrived yet
        limit = self._max_line
        content = resp.content
        while True:
            try:
                data = await content.readany()
            except Exception as exc:
                raise self._failure(exc) from exc
            if not data:
                break
            end = data.rfind(b"\n")
            if end < 0:
                pending += data
                if len(pending) > limit:
                    raise self._too_long()
                continue
            if pending:
                pending += memoryview(data)[:end]
                whole = len(pending)
                lines = bytes(pending).split(b"\n")
            else:
                whole = end
                lines = data[:end].split(b"\n")
            pending = bytearray(memoryview(data)[end + 1 :])
            # No line can be longer than what arrived: look at each only when that is.
            if len(pending) > limit or (whole > limit and any(len(x) > limit for x in lines)):
                raise self._too_long()
            if parse is None:
                batch = [line for line in lines if line and not line.isspace()]
            else:
                batch = [parse(line) for line in lines if line and not line.isspace()]
            if batch:
                yield batch
        if pending and not pending.isspace():
            yield [bytes(pending) if parse is None else parse(bytes(pending))]

    def _too_long(self) -> UpstreamError:
        return UpstreamError(
            f"Ollama sent a stream line longer than {self._max_line} bytes, the most this server "
            "accepts (--max-line-size).",
            code="upstream_line_too_long",
        )

    def _failure(self, exc: BaseException) -> APIError:
        """A transport failure → the error the client sees, naming the URL we tried."""
        if isinstance(exc, _CONNECT_TIMEOUT):
            return UpstreamUnavailable(
                f"Ollama at {self.url} did not accept a connection in time. "
                "Is the address right and reachable from here?"
            )
        if isinstance(exc, asyncio.TimeoutError | TimeoutError):
            return UpstreamTimeout(
                f"Ollama at {self.url} did not answer in time. The model may still be loading; "
                "raise --first-byte-timeout, --idle-timeout or --request-timeout if this is "
                "expected."
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = exc.os_error.strerror or str(exc.os_error) or exc.__class__.__name__
            return UpstreamUnavailable(
                f"Could not connect to Ollama at {self.url}: {reason}. "
                "Is 'ollama serve' running, and is --ollama-url (or OLLAMA_HOST) right?"
            )
        if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
            return UpstreamError(
                f"Ollama at {self.url} closed the connection before the answer was complete."
            )
        return UpstreamError(f"The connection to Ollama at {self.url} failed: {exc!r}")


def parse_line(line: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise UpstreamError("Ollama sent a stream line that is not JSON.") from None
    if not isinstance(obj, dict):
        raise UpstreamError("Ollama sent a stream line that is not a JSON object.")
    return obj
