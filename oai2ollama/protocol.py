"""The connection level, below the routes: what aiohttp's HTTP parser refuses, and clients that
are slow to send a request or idle between requests.

aiohttp answers a request it cannot parse with a plain-text 400 and logs the offending bytes —
an ``Authorization`` header among them — with a traceback. Here such a request gets an OpenAI
error object (431 for oversized headers, 414 for an oversized request line), the log gets one line
that names the kind of error and never its bytes, and a burst of them gets one line in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from .errors import APIError, InvalidRequest

log = logging.getLogger("oai2ollama")

# The longest request line (method, path and query) and header; they differ so that the parser's
# error tells which one was too long.
MAX_REQUEST_LINE = 16384
MAX_HEADER = 8190
MAX_HEADERS = 128
LOG_EVERY = 10.0  # seconds: at most one line about malformed requests this often
LINGER = 2.0  # seconds to read and drop what a refused client still sends, so it gets the answer

REQUEST_ID = "X-Request-Id"


# A request id: this process's random prefix and a running number, unique without a system call
# per request (ids name requests in logs; they are not secrets).
_ID_PREFIX = os.urandom(6).hex()
_ID_NUMBER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_NUMBER):012x}"


class RequestTimeout(InvalidRequest):
    status = 408
    code = "request_timeout"


def parse_error(exc: BaseException | None) -> APIError:
    """What the client is told about a request the parser refused; never its bytes."""
    if isinstance(exc, LineTooLong):
        if str(exc.args[1]) == str(MAX_REQUEST_LINE):
            err = InvalidRequest(
                f"The request line is longer than {MAX_REQUEST_LINE} bytes.", code="uri_too_long"
            )
            err.status = 414
            return err
        return _too_large(f"A request header is longer than {MAX_HEADER} bytes.")
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc.message):
        return _too_large(f"The request has more than {MAX_HEADERS} headers.")
    if isinstance(exc, BadHttpMethod):
        what = "The request method is not a valid HTTP method (methods are upper case)."
    elif type(exc).__name__ == "InvalidHeader" or "header" in str(getattr(exc, "message", "")):
        what = "A request header is malformed."
    elif type(exc).__name__ == "InvalidURLError":
        what = "The request URL is malformed."
    else:
        what = "The request is not valid HTTP/1.1."
    return InvalidRequest(what, code="invalid_http_request")


def _too_large(message: str) -> APIError:
    err = InvalidRequest(message, code="request_header_fields_too_large")
    err.status = 431
    return err


class _Quiet:
    """One log line about malformed requests per interval; the rest are counted into the next."""

    last = 0.0
    skipped = 0

    @classmethod
    def note(cls, peer: str | None, err: APIError, exc: BaseException | None) -> None:
        now = time.monotonic()
        if now - cls.last < LOG_EVERY:
            cls.skipped += 1
            return
        more = f" ({cls.skipped} more since the last such line)" if cls.skipped else ""
        cls.last, cls.skipped = now, 0
        log.info(
            "refused a request that is not valid HTTP from %s: %d %s (%s)%s",
            peer or "?",
            err.status,
            err.code,
            type(exc).__name__ if exc is not None else "?",
            more,
        )


class _Refusal(web.Response):
    """The answer to a request the parser refused. Once it is written, what the client still
    sends is read and dropped for a moment, so that closing does not reset the connection and
    lose the answer (a client sending a megabyte of headers is still sending when it comes)."""

    async def write_eof(self, data: bytes = b"") -> None:
        protocol = self._req.protocol if self._req is not None else None
        await super().write_eof(data)
        if isinstance(protocol, EdgeHandler):
            await protocol.linger()


class EdgeHandler(RequestHandler):
    """aiohttp's connection handler with OpenAI-shaped parser errors and a header timeout."""

    __slots__ = ("_closed", "_dropping", "_header_epoch", "_header_handle", "_header_timeout")

    def __init__(self, manager: web.Server, *, header_timeout: float = 0, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_epoch = -1
        self._header_handle: asyncio.TimerHandle | None = None
        self._dropping = False
        self._closed: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self._dropping:
            return
        super().data_received(data)
        # Part of a request arrived while waiting for one: its headers must be complete in time.
        # (A request that arrives whole, the usual case, needs no timer.)
        waiter = self._waiter
        if (
            waiter is not None
            and not waiter.done()
            and self._header_timeout
            and self._header_epoch != self._request_count
        ):
            self._header_epoch = self._request_count
            if self._header_handle is not None:
                self._header_handle.cancel()
            self._header_handle = self._loop.call_later(
                self._header_timeout, self._headers_late, self._request_count
            )

    def _headers_late(self, epoch: int) -> None:
        self._header_handle = None
        if epoch != self._request_count or self._waiter is None or self.transport is None:
            return  # the request arrived whole
        log.debug("closing a connection whose request headers did not arrive in time")
        err = RequestTimeout(
            "The request headers did not arrive within the header timeout.",
        )
        self.transport.write(_raw_response(err))
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_handle is not None:
            self._header_handle.cancel()
            self._header_handle = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        super().connection_lost(exc)

    async def linger(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self._dropping = True
        self._closed = self._loop.create_future()
        if transport.can_write_eof():
            transport.write_eof()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._closed), LINGER)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already started; the connection is closed")
        if isinstance(exc, HttpProcessingError):
            err = parse_error(exc)
            _Quiet.note(request.remote, err, exc)
            response: web.Response = _Refusal(
                status=err.status, body=_json(err), content_type="application/json"
            )
        else:
            if status == 500:
                log.error("unhandled error on a connection", exc_info=exc)
                err = APIError("The server had an error while processing your request.")
            else:
                err = APIError("The request could not be answered.", status=status)
            response = web.Response(
                status=err.status, body=_json(err), content_type="application/json"
            )
        response.headers[REQUEST_ID] = new_request_id()
        response.force_close()
        return response


def _json(err: APIError) -> bytes:
    return orjson.dumps(err.body())


def _raw_response(err: APIError) -> bytes:
    body = _json(err)
    head = (
        f"HTTP/1.1 {err.status} Request Timeout\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        f"{REQUEST_ID}: {new_request_id()}\r\n\r\n"
    )
    return head.encode() + body


class EdgeServer(web.Server):
    """Makes :class:`EdgeHandler` connections."""

    header_timeout: float = 0

    def __call__(self) -> RequestHandler:
        return EdgeHandler(
            self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs
        )


class EdgeRunner(web.AppRunner):
    """An AppRunner whose connections are :class:`EdgeHandler`."""

    def __init__(self, app: web.Application, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(
            app,
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=MAX_HEADER,
            max_headers=MAX_HEADERS,
            **kwargs,
        )
        self._header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = EdgeServer
        server.header_timeout = self._header_timeout  # type: ignore[attr-defined]
        return server
