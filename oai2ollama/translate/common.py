"""Rules shared by every OpenAI surface: field validation and the mapping of sampling parameters.

Everything here is pure: plain dicts in, plain dicts out, :class:`InvalidRequest` for bad input.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import InvalidRequest

# Ollama's `options` and the JSON type each one must have. A wrong type makes Ollama answer
# 500 while loading the model; checking here turns that into a 400 that names the field.
OPTION_TYPES: dict[str, str] = {
    "num_keep": "int",
    "seed": "int",
    "num_predict": "int",
    "top_k": "int",
    "top_p": "number",
    "min_p": "number",
    "typical_p": "number",
    "repeat_last_n": "int",
    "temperature": "number",
    "repeat_penalty": "number",
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "stop": "strings",
    "num_ctx": "int",
    "num_batch": "int",
    "num_gpu": "int",
    "main_gpu": "int",
    "use_mmap": "bool",
    "num_thread": "int",
    "draft_num_predict": "int",
}

# Options that shape the loaded model; changing one makes Ollama reload it.
RUNNER_OPTIONS = frozenset(
    {"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict"}
)

# OpenAI sampling fields and their Ollama option, with OpenAI's documented ranges.
_SAMPLING: tuple[tuple[str, str, float | None, float | None], ...] = (
    ("temperature", "temperature", 0.0, 2.0),
    ("top_p", "top_p", 0.0, 1.0),
    ("presence_penalty", "presence_penalty", -2.0, 2.0),
    ("frequency_penalty", "frequency_penalty", -2.0, 2.0),
)

# Ollama options a client may also send at the top level of the body (the SDKs' `extra_body`).
# Those with an OpenAI name of their own are read through the OpenAI rules instead.
TOP_LEVEL_OPTIONS = frozenset(OPTION_TYPES) - {
    "seed",
    "stop",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
}

THINK_LEVELS = frozenset({"low", "medium", "high", "max"})


def new_id(prefix: str) -> str:
    """A unique, unguessable id such as ``chatcmpl-3f9a…`` (Ollama's own layer repeats ids)."""
    return prefix + secrets.token_hex(12)


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


def stop_list(value: Any, param: str = "stop") -> list[str] | None:
    """OpenAI allows a string or a list of strings; Ollama wants a list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise invalid_type(f"{param}[{i}]", "a string", item)
        return list(value) or None
    raise invalid_type(param, "a string or an array of strings", value)


def check_option(name: str, value: Any) -> Any:
    """Check one Ollama option against the type Ollama will demand of it."""
    kind = OPTION_TYPES.get(name)
    param = f"options.{name}"
    if kind is None or value is None:
        return value
    if kind in ("int", "number"):
        if not is_number(value):
            raise invalid_type(param, "an integer" if kind == "int" else "a number", value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise invalid_type(param, "a boolean", value)
    elif kind == "strings":
        return stop_list(value, param)
    return value


def build_options(body: Mapping[str, Any]) -> dict[str, Any]:
    """Ollama `options` for a request: only what the client set, never a default of ours.

    Precedence, lowest first: the body's ``options`` object, Ollama option names at the top level
    of the body, then the OpenAI fields (``temperature``, ``max_tokens``, …).
    """
    options: dict[str, Any] = {}
    raw = body.get("options")
    if raw is not None:
        if not isinstance(raw, dict):
            raise invalid_type("options", "an object", raw)
        for name, value in raw.items():
            checked = check_option(name, value)
            if checked is not None:
                options[name] = checked
    for name in TOP_LEVEL_OPTIONS.intersection(body):
        value = body[name]
        if value is not None:
            options[name] = check_option(name, value)

    for key, option, lo, hi in _SAMPLING:
        value = optional_number(body, key, lo, hi)
        if value is not None:
            options[option] = value
    seed = optional_int(body, "seed")
    if seed is not None:
        options["seed"] = seed
    stop = stop_list(body.get("stop"))
    if stop is not None:
        options["stop"] = stop
    limit = optional_int(body, "max_completion_tokens", 1)
    if limit is None:
        limit = optional_int(body, "max_tokens", 1)
    if limit is not None:
        options["num_predict"] = limit
    return options


def reasoning_to_think(body: Mapping[str, Any]) -> bool | str | None:
    """``reasoning_effort`` (or ``reasoning.effort``, or Ollama's own ``think``) → Ollama ``think``.

    Absent means absent: older Ollama servers reject ``think`` on models that cannot think.
    """
    effort = body.get("reasoning_effort")
    param = "reasoning_effort"
    reasoning = body.get("reasoning")
    if effort is None and reasoning is not None:
        if not isinstance(reasoning, dict):
            raise invalid_type("reasoning", "an object", reasoning)
        effort, param = reasoning.get("effort"), "reasoning.effort"
    if effort is not None:
        if not isinstance(effort, str):
            raise invalid_type(param, "a string", effort)
        level = effort.lower()
        if level == "none":
            return False
        if level == "minimal":
            return "low"
        if level in ("low", "medium", "high"):
            return level
        if level in ("xhigh", "max"):
            return "high"
        raise InvalidRequest(
            f"Invalid value for '{param}': {effort!r}. "
            "Supported values: 'none', 'minimal', 'low', 'medium', 'high', 'xhigh'.",
            param=param,
            code="invalid_value",
        )
    think = body.get("think")
    if think is None or isinstance(think, bool):
        return think
    if isinstance(think, str) and think in THINK_LEVELS:
        return think
    raise InvalidRequest(
        "Invalid value for 'think': expected a boolean or one of 'low', 'medium', 'high', 'max'.",
        param="think",
        code="invalid_value",
    )


def response_format_to_format(body: Mapping[str, Any]) -> str | dict[str, Any] | None:
    """``response_format`` (or Ollama's own ``format``) → Ollama ``format``."""
    fmt = body.get("response_format")
    if fmt is None:
        raw = body.get("format")
        if raw is None or raw == "" or raw == "json" or isinstance(raw, dict):
            check_depth(raw, "format")
            return raw or None
        raise InvalidRequest(
            "Invalid value for 'format': expected \"json\" or a JSON schema object.",
            param="format",
            code="invalid_value",
        )
    if not isinstance(fmt, dict):
        raise invalid_type("response_format", "an object", fmt)
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise invalid_type("response_format.json_schema", "an object", spec)
        schema = spec.get("schema")
        if not isinstance(schema, dict):
            raise invalid_type("response_format.json_schema.schema", "an object", schema)
        check_depth(schema, "response_format.json_schema.schema")
        return schema
    raise InvalidRequest(
        f"Invalid value for 'response_format.type': {kind!r}. "
        "Supported values: 'text', 'json_object', 'json_schema'.",
        param="response_format.type",
        code="invalid_value",
    )


def keep_alive(body: Mapping[str, Any]) -> str | int | float | None:
    value = body.get("keep_alive")
    if value is None or isinstance(value, str) or is_number(value):
        return value
    raise invalid_type("keep_alive", "a duration string or a number of seconds", value)


def include_usage(body: Mapping[str, Any]) -> bool:
    """``stream_options.include_usage``: whether a stream ends with a usage chunk."""
    stream_options = body.get("stream_options")
    if stream_options is None:
        return False
    if not isinstance(stream_options, dict):
        raise invalid_type("stream_options", "an object", stream_options)
    return bool(optional_bool(stream_options, "include_usage", "stream_options.include_usage"))


def add_ollama_fields(
    payload: dict[str, Any],
    body: Mapping[str, Any],
    *,
    generation: bool = True,
    fmt: str | dict[str, Any] | None = None,
) -> None:
    """The fields every Ollama request may carry: ``options`` and ``keep_alive``, and for a
    generation also ``format`` (``fmt`` if given, else from ``response_format``) and ``think``."""
    options = build_options(body)
    if options:
        payload["options"] = options
    alive = keep_alive(body)
    if alive is not None:
        payload["keep_alive"] = alive
    if not generation:
        return
    fmt = fmt or response_format_to_format(body)
    if fmt is not None:
        payload["format"] = fmt
    think = reasoning_to_think(body)
    if think is not None:
        payload["think"] = think


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def usage_from(answer: Mapping[str, Any]) -> dict[str, int]:
    """Ollama omits zero counters (``omitempty``), so a missing one is 0."""
    return usage(answer.get("prompt_eval_count") or 0, answer.get("eval_count") or 0)


class ChoiceStream:
    """The SSE framing shared by streamed chat and text completions, for one choice.

    The parts every event shares (id, object, created, model, index) are serialised once; an
    event then costs one join of bytes around the choice's new value.
    """

    __slots__ = ("_close", "_head", "_open", "_plain", "_solo", "done", "include_usage", "usage")

    def __init__(
        self,
        *,
        completion_id: str,
        obj: str,
        created: int,
        model: str,
        index: int,
        key: str,
        include_usage: bool,
        solo: bool,
    ) -> None:
        head = orjson.dumps(
            {"id": completion_id, "object": obj, "created": created, "model": model}
        )
        self._head = b"data: " + head[:-1] + b',"choices":'
        self._open = self._head + b'[{"index":%d,"%s":' % (index, key.encode())
        self.include_usage = include_usage
        self._close = b"}]" + (b',"usage":null}\n\n' if include_usage else b"}\n\n")
        self._plain = b',"logprobs":null,"finish_reason":null' + self._close
        self._solo = solo  # a single choice: this stream also writes the end
        self.done = False
        self.usage = usage(0, 0)

    def _event(
        self, value: bytes, finish: str | None = None, logprobs: bytes | None = None
    ) -> bytes:
        if finish is None and logprobs is None:
            return self._open + value + self._plain  # the common case: one delta
        fr = b"null" if finish is None else b'"' + finish.encode() + b'"'
        return (
            self._open
            + value
            + b',"logprobs":'
            + (logprobs or b"null")
            + b',"finish_reason":'
            + fr
            + self._close
        )

    def end(self, total: dict[str, int]) -> bytes:
        """The close of the whole stream: the usage chunk if asked for, then ``[DONE]``."""
        out = b"data: [DONE]\n\n"
        if self.include_usage:
            out = self._head + b'[],"usage":' + orjson.dumps(total) + b"}\n\n" + out
        return out

    def _finished(self, chunk: dict[str, Any], finish: str) -> bytes:
        self.done = True
        self.usage = usage_from(chunk)
        out = self._event(self._empty, finish)
        if self._solo:
            out += self.end(self.usage)
        return out

    _empty = b"{}"
