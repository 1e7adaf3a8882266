"""Checks of the request fields every OpenAI surface reads, and the 400s they raise.

Pure: plain values in, :class:`InvalidRequest` out, so each surface names a bad field the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import InvalidRequest


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def invalid_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)}.",
        param=param,
        code="invalid_type",
    )


# orjson writes at most 254 levels of nesting (and reads 1024). A client's value lands less than
# ten levels down in what is sent to Ollama or answered, so this leaves room for the envelope.
WRITABLE_DEPTH = 254
MAX_DEPTH = 200


def check_depth(value: Any, param: str, limit: int = MAX_DEPTH) -> None:
    """Refuse a value nested deeper than ``limit`` containers: it could be read but not written
    back. orjson measures, in C: a value with no more brackets than ``limit`` cannot be deeper
    (the common case, one serialisation); otherwise it is written again wrapped so that orjson's
    own limit falls at ``limit``."""
    if not isinstance(value, dict | list):
        return
    try:
        raw = orjson.dumps(value)
        if raw.count(b"{") + raw.count(b"[") <= limit:
            return
        wrapped: Any = value
        for _ in range(WRITABLE_DEPTH - limit):
            wrapped = [wrapped]
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError as exc:
        if "ecursion" not in str(exc):
            raise
        raise InvalidRequest(
            f"Invalid value for '{param}': JSON nested more than {limit} levels deep is not "
            "accepted.",
            param=param,
            code="nested_too_deep",
        ) from None


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"The request body must be a JSON object, not {type_name(body)}.", code="invalid_body"
        )
    return body


def require_str(body: Mapping[str, Any], key: str, param: str | None = None) -> str:
    value = body.get(key)
    param = param or key
    if value is None:
        raise InvalidRequest(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    if not value:
        raise InvalidRequest(f"'{param}' must not be empty.", param=param, code="invalid_value")
    return value


def optional_bool(body: Mapping[str, Any], key: str, param: str | None = None) -> bool | None:
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise invalid_type(param or key, "a boolean", value)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def optional_number(
    body: Mapping[str, Any],
    key: str,
    lo: float | None = None,
    hi: float | None = None,
    param: str | None = None,
) -> float | int | None:
    value = body.get(key)
    if value is None:
        return None
    param = param or key
    if not is_number(value):
        raise invalid_type(param, "a number", value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidRequest(
            f"Invalid value for '{param}': {value} is not between {lo:g} and {hi:g}.",
            param=param,
            code="invalid_value",
        )
    return value


def optional_int(
    body: Mapping[str, Any],
    key: str,
    lo: int | None = None,
    param: str | None = None,
    hi: int | None = None,
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    param = param or key
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_type(param, "an integer", value)
    if lo is not None and value < lo:
        raise InvalidRequest(
            f"Invalid value for '{param}': {value} is less than the minimum of {lo}.",
            param=param,
            code="invalid_value",
        )
    if hi is not None and value > hi:
        raise InvalidRequest(
            f"Invalid value for '{param}': {value} is more than the maximum of {hi}.",
            param=param,
            code="invalid_value",
        )
    return value


def include_usage(body: Mapping[str, Any]) -> bool:
    """``stream_options.include_usage``: whether a stream ends with a usage chunk."""
    stream_options = body.get("stream_options")
    if stream_options is None:
        return False
    if not isinstance(stream_options, dict):
        raise invalid_type("stream_options", "an object", stream_options)
    return bool(optional_bool(stream_options, "include_usage", "stream_options.include_usage"))
