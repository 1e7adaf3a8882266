"""The request fields that become Ollama's own: ``options``, ``keep_alive``, ``format``, ``think``.

Only what the client set is passed on, checked against the type Ollama demands, so a wrong type is
a 400 naming the field rather than Ollama's 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequest
from .validate import check_depth, invalid_type, is_number, optional_int, optional_number

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
