"""One error type for everything the shim reports, rendered in one place.

Every failure a client can see — bad input, a missing model, an upstream that is down — is an
:class:`APIError`. Translation code raises it without knowing about HTTP; the server renders it
as the OpenAI error object, either as a JSON response or as the last event of a stream.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any

import orjson


class APIError(Exception):
    """An error in the OpenAI shape: ``{"error": {"message", "type", "param", "code"}}``."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(APIError):
    """The request itself is wrong; retrying it unchanged cannot help."""

    status = 400
    type = "invalid_request_error"


class Unauthorized(InvalidRequest):
    status = 401
    code = "invalid_api_key"


class PermissionDenied(APIError):
    status = 403
    type = "permission_error"


class NotFound(InvalidRequest):
    status = 404


class ModelNotFound(NotFound):
    code = "model_not_found"


class UnknownURL(NotFound):
    code = "unknown_url"


class MethodNotAllowed(InvalidRequest):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class RateLimited(APIError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class ShuttingDown(APIError):
    status = 503
    code = "server_shutting_down"


class StoreUnavailable(APIError):
    """The Responses store (Redis) cannot be reached; only requests that need it fail."""

    status = 503
    code = "store_unavailable"


class UpstreamError(APIError):
    """Ollama answered with an error that is not the client's fault."""

    status = 502
    type = "server_error"
    code = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"


class UpstreamBusy(UpstreamError):
    status = 503
    code = "upstream_busy"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


# ---- statuses → errors, in one place ---------------------------------------------------------
#
# Two sources of statuses meet here: Ollama's answers (`from_ollama`, `from_ollama_body`) and the
# HTTP server's own refusals (`from_http_status`). The rule for Ollama: a status that says the
# request is at fault ("you": 4xx) or that asks to come back ("later": 429, 503) passes through
# as itself, with Ollama's Retry-After, so the client's SDK retries exactly what retrying can fix.
# What is Ollama's own trouble becomes a 5xx.


def from_ollama(
    status: int, message: str, model: str | None = None, retry_after: str | None = None
) -> APIError:
    """Map an Ollama error status and message to the nearest OpenAI error.

    Ollama's messages are kept verbatim: they name the model, the missing capability or the
    failing option, which is exactly what the user needs to read.
    """
    wait = {"Retry-After": retry_after} if retry_after else None
    if status == 404:
        if model is not None and "not found" in message:
            return ModelNotFound(
                f"The model '{model}' does not exist on this Ollama server "
                f"(pull it with: ollama pull {model}). Ollama said: {message}",
                param="model",
            )
        return NotFound(message, headers=wait)
    if status == 501:
        # Not implemented *for this model* (e.g. embeddings from a runner that cannot embed):
        # the same request fails every time, so it is the client's to change.
        return InvalidRequest(
            f"The model '{model}' cannot do this: {message}" if model else message,
            param="model" if model else None,
            code="model_not_supported",
        )
    if status in (401, 403):
        # Ollama refusing us (cloud models, its host check) is not the client's key at fault.
        return PermissionDenied(f"Ollama refused the request ({status}): {message}", headers=wait)
    if status == 413:
        return PayloadTooLarge(f"Ollama refused the request as too large: {message}", headers=wait)
    if status == 429:
        return RateLimited(message, code="upstream_rate_limited", headers=wait)
    if status == 499:
        return UpstreamError(f"Ollama cancelled the request: {message}")
    if 400 <= status < 500:
        return InvalidRequest(message, status=status, headers=wait)
    if status == 503:
        return UpstreamBusy(message, headers=wait or {"Retry-After": "1"})
    if status == 504:
        return UpstreamTimeout(message)
    if status == 502:
        return UpstreamError(message)
    if 500 <= status < 600:
        return APIError(message, status=status, headers=wait)
    return UpstreamError(f"Ollama answered with status {status}: {message}")


def from_ollama_body(
    status: int, body: bytes | bytearray, model: str | None, retry_after: str | None = None
) -> APIError:
    """Ollama's ``{"error": "..."}`` body (or whatever else came) → an OpenAI error."""
    message = ""
    try:
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and parsed.get("error") is not None:
            message = str(parsed["error"])
    except orjson.JSONDecodeError:
        pass
    if not message:
        message = body.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
    return from_ollama(status, message, model, retry_after_value(retry_after))


def retry_after_value(value: str | None) -> str | None:
    """A ``Retry-After`` worth passing on: delay-seconds or an HTTP date; None otherwise."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) <= 9:
        return value
    if len(value) <= 64 and value.isascii():
        try:
            if parsedate_to_datetime(value) is not None:
                return value
        except (TypeError, ValueError, IndexError):
            return None
    return None


def from_http_status(
    status: int,
    reason: str,
    *,
    method: str,
    path: str,
    body_limit: int,
    served: str = "the API is served under /v1",
) -> APIError:
    """The HTTP server's own refusals (no route, wrong method, body too large, …); ``served``
    says where the API is, for an unknown URL."""
    if status == 404:
        return UnknownURL(f"Unknown request URL: {method} {path}. Please check the URL; {served}.")
    if status == 405:
        return MethodNotAllowed(f"Method {method} is not allowed for {path}.")
    if status == 413:
        return PayloadTooLarge(f"The request body is larger than the limit of {body_limit} bytes.")
    if status < 500:
        return InvalidRequest(reason or "Bad request.", status=status)
    return APIError(reason or "The server had an error.", status=status)
