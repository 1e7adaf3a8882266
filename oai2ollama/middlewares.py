"""Middlewares around every route: errors, keys, CORS, metrics and the access log."""

from __future__ import annotations

import asyncio
import fnmatch
import hmac
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from .config import Settings
from .errors import APIError, PermissionDenied, ShuttingDown, Unauthorized, from_http_status
from .exchange import CURRENT, client_address
from .logs import write_access
from .metrics import Metrics
from .protocol import REQUEST_ID, new_request_id
from .state import (
    EXCHANGE,
    METRICS,
    SETTINGS,
    Exchange,
    Handler,
    error_response,
    ollama_error_response,
    ollama_path,
)
from .store import tenant_of

log = logging.getLogger("oai2ollama")
access = logging.getLogger("oai2ollama.access")

OPEN_PATHS = frozenset({"/healthz", "/readyz"})

# With --open-discovery, what a client needs to find the models, and nothing else.
DISCOVERY_ROUTES = frozenset(
    {
        ("GET", "/api/version"),
        ("GET", "/api/tags"),
        ("POST", "/api/show"),
        ("GET", "/"),
        ("HEAD", "/"),
    }
)

EXPOSED_HEADERS = "X-Oai2ollama-Warning, Retry-After, X-Request-Id"


def _render(request: web.Request, err: APIError, *, counted: bool = True) -> web.Response:
    """Each face answers errors in the shape its clients parse; the code is recorded for the
    access log, and failures of Ollama are counted."""
    request[EXCHANGE].error = err.code or err.type
    if counted and err.status >= 500:
        request.app[METRICS].upstream_error(err.code)
    if ollama_path(request.path):
        return ollama_error_response(err)
    return error_response(err)


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> APIError:
    served = (
        "this server answers Ollama's API for inference and discovery only"
        if ollama_path(request.path)
        else "the API is served under /v1"
    )
    return from_http_status(
        exc.status,
        exc.reason,
        method=request.method,
        path=request.path,
        body_limit=request.app[SETTINGS].max_body_size,
        served=served,
    )


def auth_middleware(
    keys: Iterable[str], open_routes: frozenset[tuple[str, str]] = frozenset()
) -> Callable[[web.Request, Handler], Awaitable[Any]]:
    """Every route but ``OPEN_PATHS`` needs one of ``keys``; ``open_routes`` (method, path) take
    a request that carries no key, but a key that is sent must be right. The key that matched
    names the request's tenant (a hash of it)."""
    expected = [(key.encode(), tenant_of(key)) for key in keys]

    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if not token and scheme.lower() in ("", "bearer"):  # no header, or an empty "Bearer "
            if (request.method, request.path) in open_routes:
                return await handler(request)
            raise Unauthorized(
                "Missing API key. Send it in the Authorization header as 'Bearer <key>'."
            )
        given = token.encode()
        tenant = None
        for key, owner in expected:  # every key is compared, so timing tells nothing
            if hmac.compare_digest(given, key):
                tenant = owner
        if scheme.lower() != "bearer" or tenant is None:
            raise Unauthorized("Incorrect API key provided.")
        request[EXCHANGE].tenant = tenant
        return await handler(request)

    return check_key


def cors_middleware(patterns: tuple[str, ...]) -> Callable[[web.Request, Handler], Awaitable[Any]]:
    """Answers preflights for allowed origins; `cors_headers` marks the real responses."""

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
        methods = allowed_methods(request)
        if methods is None:
            return await handler(request)  # no such route: its 404
        asked = request.headers.get("Access-Control-Request-Headers", "authorization, content-type")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": methods,
                "Access-Control-Allow-Headers": asked,
                "Access-Control-Max-Age": "600",
            },
        )

    return preflight


def allowed_methods(request: web.Request) -> str | None:
    """The methods the requested route answers (a preflight is an OPTIONS request, which no
    route has, so the router's 405 lists them); None for a path with no route."""
    exc = getattr(request.match_info, "http_exception", None)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        methods = set(exc.allowed_methods)
    elif exc is None:
        methods = {request.method}
    else:
        return None
    return ", ".join(sorted(methods | {"OPTIONS"}))


def origin_allowed(origin: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(origin, pattern) for pattern in patterns)


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """With CORS on, every answer depends on the Origin header: say so to caches."""
    vary = response.headers.get("Vary")
    if vary is None:
        response.headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Origin"
    origin = request.headers.get("Origin")
    if origin and origin_allowed(origin, request.app[SETTINGS].cors_origins):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable() and " " not in value


def observe_middleware(
    settings: Settings, metrics: Metrics, in_flight: set[Exchange]
) -> Callable[[web.Request, Handler], Awaitable[Any]]:
    """The outermost middleware: the request's id and record, every failure rendered as its
    face's error object, the metrics and the access log (one line per request, with model,
    status, time and tokens). One layer rather than several, built once with what it needs, as
    it runs on every request."""
    access_log = settings.access_log

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request.headers.get(REQUEST_ID)
        if request_id is None or not _valid_request_id(request_id):
            request_id = new_request_id()
        task = asyncio.current_task()
        exchange = request[EXCHANGE] = Exchange(started, request_id, task)
        CURRENT.set(weakref.ref(request))
        in_flight.add(exchange)
        status = 499  # the client went away unless we learn otherwise
        try:
            try:
                response = await handler(request)
            except APIError as err:
                response = _render(request, err)
            except web.HTTPException as exc:
                response = _render(request, _from_http_exception(request, exc))
            except asyncio.CancelledError:
                if not exchange.stopping or task is None:
                    raise
                task.uncancel()  # cancelled by shutdown, not by the client: tell it
                err = ShuttingDown("The server is shutting down; retry the request.")
                response = _render(request, err, counted=False)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.path)
                err = APIError("The server had an error while processing your request.")
                response = _render(request, err, counted=False)
            status = exchange.status or response.status
            if not response.prepared:
                response.headers[REQUEST_ID] = request_id
            return response
        except asyncio.CancelledError:
            if exchange.status is not None:  # a stream ended by shutdown, with an error event
                status = exchange.status
            raise
        finally:
            in_flight.discard(exchange)
            exchange.task = None
            elapsed = time.perf_counter() - started
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unknown"
            usage = exchange.usage
            label = metrics.model_label(exchange.model, exchange.target, status)
            metrics.request(route, label, status, elapsed)
            if usage:
                metrics.usage(label, usage["prompt_tokens"], usage["completion_tokens"])
            if access_log and access.isEnabledFor(logging.INFO):
                _access_line(request, exchange, status, elapsed)

    return observe


def _access_line(request: web.Request, exchange: Exchange, status: int, elapsed: float) -> None:
    model, target, usage = exchange.model, exchange.target, exchange.usage
    client = client_address(request, exchange)
    tokens = f" tokens={usage['prompt_tokens']}+{usage['completion_tokens']}" if usage else ""
    local = f" local={target}" if target and target != model else ""
    stream = " stream" if exchange.stream else ""
    error = f" error={exchange.error}" if exchange.error else ""
    message = (
        f"{request.method} {request.path} {model or '-'} {status} {elapsed * 1000:.1f}ms"
        f"{tokens}{local}{stream}{error} client={client or '-'} id={exchange.request_id}"
    )
    fields = {
        "request_id": exchange.request_id,
        "client": client,
        "method": request.method,
        "path": request.path,
        "model": model,
        "local_model": target,
        "stream": exchange.stream,
        "status": status,
        "error": exchange.error,
        "duration_ms": round(elapsed * 1000, 3),
        "prompt_tokens": usage["prompt_tokens"] if usage else None,
        "completion_tokens": usage["completion_tokens"] if usage else None,
    }
    if not write_access(message, fields):
        access.info("%s", message, extra=fields)
