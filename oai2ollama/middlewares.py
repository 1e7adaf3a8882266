"""Middlewares around every route: errors, keys, CORS, metrics and the access log."""

from __future__ import annotations

import fnmatch
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from .errors import APIError, PermissionDenied, Unauthorized, from_http_status
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

EXPOSED_HEADERS = "X-Oai2ollama-Warning, Retry-After"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except APIError as err:
        return _render(request, err)
    except web.HTTPException as exc:
        return _render(request, _from_http_exception(request, exc))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _render(request, APIError("The server had an error while processing your request."))


def _render(request: web.Request, err: APIError) -> web.Response:
    """Each face answers errors in the shape its clients parse."""
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


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
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
