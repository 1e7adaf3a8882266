"""One error type for everything the shim reports, rendered in one place.

Every failure a client can see — bad input, a missing model, an upstream that is down — is an
:class:`APIError`. Translation code raises it without knowing about HTTP; the server renders it
as the OpenAI error object, either as a JSON response or as the last event of a stream.
"""

from __future__ import annotations

from typing import Any


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


def from_ollama(status: int, message: str, model: str | None = None) -> APIError:
    """Map an Ollama error status and message to the nearest OpenAI error.

    Ollama's messages are kept verbatim: they name the model, the missing capability or the
    failing option, which is exactly what the user needs to read.
    """
    if status == 404:
        if model is not None and "not found" in message:
            return ModelNotFound(
                f"The model '{model}' does not exist on this Ollama server "
                f"(pull it with: ollama pull {model}). Ollama said: {message}",
                param="model",
            )
        return NotFound(message)
    if status in (400, 422):
        return InvalidRequest(message)
    if status in (401, 403):
        return PermissionDenied(f"Ollama refused the request ({status}): {message}")
    if status == 499:
        return UpstreamError(f"Ollama cancelled the request: {message}")
    if status == 503:
        return UpstreamBusy(message, headers={"Retry-After": "1"})
    if status == 504:
        return UpstreamTimeout(message)
    if 500 <= status < 600:
        return APIError(message, status=status if status != 501 else 500)
    return UpstreamError(f"Ollama answered with status {status}: {message}")
