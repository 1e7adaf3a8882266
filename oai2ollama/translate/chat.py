"""Chat completions: OpenAI ``/v1/chat/completions`` ⇄ Ollama ``/api/chat``.

Two directions, both pure: :func:`parse_request` turns an OpenAI body into the Ollama body, and
:func:`completion` / :class:`ChatStream` turn Ollama's answer (whole, or one NDJSON line at a time)
into the OpenAI answer (whole, or SSE events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import InvalidRequest, from_ollama
from . import common
from .common import invalid_type, new_id

# Fields OpenAI accepts that have no Ollama counterpart and change nothing a local model can do.
IGNORED_FIELDS = frozenset(
    {
        "logit_bias",
        "user",
        "store",
        "metadata",
        "service_tier",
        "prediction",
        "web_search_options",
        "prompt_cache_key",
        "safety_identifier",
        "verbosity",
    }
)

_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat request: what to send to Ollama, and how to answer the client."""

    model: str
    stream: bool
    include_usage: bool
    payload: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Request: OpenAI → Ollama


def parse_request(body: Any) -> ChatRequest:
    body = common.require_object(body)
    model = common.require_str(body, "model")
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        raise InvalidRequest(
            "'messages' must contain at least one message.", param="messages", code="invalid_value"
        )

    stream = bool(common.optional_bool(body, "stream"))
    include_usage = False
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise invalid_type("stream_options", "an object", stream_options)
        include_usage = bool(
            common.optional_bool(stream_options, "include_usage", "stream_options.include_usage")
        )

    n = common.optional_int(body, "n", 1)
    if n is not None and n != 1:
        raise InvalidRequest(
            "Only n=1 is supported: Ollama returns one choice per request.",
            param="n",
            code="unsupported_value",
        )
    _refuse_audio(body)

    payload: dict[str, Any] = {
        "model": model,
        "messages": convert_messages(messages),
        "stream": stream,
    }
    tools = _tools(body)
    if tools:
        payload["tools"] = tools
    options = common.build_options(body)
    if options:
        payload["options"] = options
    fmt = common.response_format_to_format(body)
    if fmt is not None:
        payload["format"] = fmt
    think = common.reasoning_to_think(body)
    if think is not None:
        payload["think"] = think
    keep_alive = common.keep_alive(body)
    if keep_alive is not None:
        payload["keep_alive"] = keep_alive
    if common.optional_bool(body, "logprobs"):
        payload["logprobs"] = True
        top = common.optional_int(body, "top_logprobs", 0)
        if top is not None:
            if top > 20:
                raise InvalidRequest(
                    "Invalid value for 'top_logprobs': must be between 0 and 20.",
                    param="top_logprobs",
                    code="invalid_value",
                )
            payload["top_logprobs"] = top
    elif body.get("top_logprobs") is not None:
        raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
    return ChatRequest(model=model, stream=stream, include_usage=include_usage, payload=payload)


def _refuse_audio(body: dict[str, Any]) -> None:
    modalities = body.get("modalities")
    if modalities is not None:
        if not isinstance(modalities, list):
            raise invalid_type("modalities", "an array", modalities)
        if "audio" in modalities:
            raise InvalidRequest(
                "Audio output is not available through Ollama; remove 'audio' from 'modalities'.",
                param="modalities",
                code="unsupported_value",
            )
    if body.get("audio") is not None:
        raise InvalidRequest(
            "Audio output is not available through Ollama.", param="audio", code="unsupported_value"
        )


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``tools`` (or the legacy ``functions``) → Ollama tools, honouring ``tool_choice: none``."""
    raw = body.get("tools")
    param = "tools"
    legacy = False
    if raw is None and body.get("functions") is not None:
        raw, param, legacy = body["functions"], "functions", True
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid_type(param, "an array", raw)
    tools = []
    for i, tool in enumerate(raw):
        where = f"{param}[{i}]"
        if not isinstance(tool, dict):
            raise invalid_type(where, "an object", tool)
        if legacy:
            fn = tool
        else:
            kind = tool.get("type", "function")
            if kind != "function":
                raise InvalidRequest(
                    f"Unsupported tool type {kind!r} in '{where}.type': only 'function' tools "
                    "can be run by a local model.",
                    param=f"{where}.type",
                    code="unsupported_value",
                )
            fn = tool.get("function")
            where += ".function"
            if not isinstance(fn, dict):
                raise invalid_type(where, "an object", fn)
        common.require_str(fn, "name", f"{where}.name")
        out: dict[str, Any] = {"name": fn["name"]}
        description = fn.get("description")
        if description is not None:
            if not isinstance(description, str):
                raise invalid_type(f"{where}.description", "a string", description)
            out["description"] = description
        params = fn.get("parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise invalid_type(f"{where}.parameters", "an object", params)
            out["parameters"] = params
        tools.append({"type": "function", "function": out})

    choice = body.get("tool_choice") if not legacy else body.get("function_call")
    choice_param = "function_call" if legacy else "tool_choice"
    if choice is None or choice == "auto":
        return tools
    if choice == "none":
        return []
    raise InvalidRequest(
        f"'{choice_param}' {choice!r} is not supported yet; use 'auto' or 'none'.",
        param=choice_param,
        code="unsupported_value",
    )


def convert_messages(messages: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid_type(where, "an object", message)
        role = message.get("role")
        mapped = _ROLES.get(role) if isinstance(role, str) else None
        if mapped is None:
            raise InvalidRequest(
                f"Invalid value for '{where}.role': {role!r}. Supported values: 'system', "
                "'developer', 'user', 'assistant', 'tool' and 'function'.",
                param=f"{where}.role",
                code="invalid_value",
            )
        content, images = _content(message.get("content"), where, role)
        converted: dict[str, Any] = {"role": mapped, "content": content}
        if images:
            converted["images"] = images
        if mapped == "assistant":
            thinking = message.get("reasoning_content", message.get("reasoning"))
            if isinstance(thinking, str) and thinking:
                converted["thinking"] = thinking
            calls = _history_calls(message, where, call_names)
            if calls:
                converted["tool_calls"] = calls
        elif mapped == "tool":
            _tool_result(message, where, role, call_names, converted)
        out.append(converted)
    return out


def _content(content: Any, where: str, role: str) -> tuple[str, list[str]]:
    if isinstance(content, str):
        return content, []
    if content is None:
        if role in ("assistant", "function"):
            return "", []
        raise InvalidRequest(
            f"Missing required parameter: '{where}.content'.",
            param=f"{where}.content",
            code="missing_required_parameter",
        )
    if not isinstance(content, list):
        raise invalid_type(f"{where}.content", "a string or an array of content parts", content)
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        here = f"{where}.content[{j}]"
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise invalid_type(here, "an object", part)
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text", "refusal"):
            key = "refusal" if kind == "refusal" else "text"
            text = part.get(key)
            if not isinstance(text, str):
                raise invalid_type(f"{here}.{key}", "a string", text)
            texts.append(text)
        elif kind == "image_url":
            images.append(image_payload(part.get("image_url"), f"{here}.image_url"))
        else:
            raise InvalidRequest(
                f"Unsupported content part type {kind!r} in '{here}': Ollama accepts text and "
                "images (image_url with a data: URL).",
                param=here,
                code="unsupported_value",
            )
    return "\n".join(texts), images


def image_payload(image: Any, param: str) -> str:
    """An OpenAI ``image_url`` (object or bare string) → the plain base64 that Ollama wants."""
    url = image.get("url") if isinstance(image, dict) else image
    param = f"{param}.url" if isinstance(image, dict) else param
    if not isinstance(url, str):
        raise invalid_type(param, "a string", url)
    if url.startswith("data:"):
        header, sep, data = url.partition(",")
        if not sep or not header.endswith(";base64") or not data:
            raise InvalidRequest(
                f"Invalid image data URL in '{param}': expected 'data:<type>;base64,<data>'.",
                param=param,
                code="invalid_image_url",
            )
        return data
    if url.startswith(("http://", "https://")):
        raise InvalidRequest(
            f"Image URLs are not fetched by this server ('{param}'). Send the image inline as a "
            "data: URL ('data:image/png;base64,...').",
            param=param,
            code="image_url_not_allowed",
        )
    raise InvalidRequest(
        f"Invalid image URL in '{param}': expected a data: URL.",
        param=param,
        code="invalid_image_url",
    )


def _history_calls(
    message: dict[str, Any], where: str, call_names: dict[str, str]
) -> list[dict[str, Any]]:
    """An assistant turn's ``tool_calls`` (or legacy ``function_call``) → Ollama tool calls."""
    raw = message.get("tool_calls")
    if raw is None:
        legacy = message.get("function_call")
        if legacy is None:
            return []
        raw = [{"function": legacy}]
        where = f"{where}.function_call"
        items = [(where, raw[0]["function"], None)]
    else:
        if not isinstance(raw, list):
            raise invalid_type(f"{where}.tool_calls", "an array", raw)
        items = []
        for j, call in enumerate(raw):
            here = f"{where}.tool_calls[{j}]"
            if not isinstance(call, dict):
                raise invalid_type(here, "an object", call)
            items.append((f"{here}.function", call.get("function"), call.get("id")))
    calls = []
    for here, fn, call_id in items:
        if not isinstance(fn, dict):
            raise invalid_type(here, "an object", fn)
        name = common.require_str(fn, "name", f"{here}.name")
        converted: dict[str, Any] = {
            "function": {"name": name, "arguments": parse_arguments(fn.get("arguments"), here)}
        }
        if isinstance(call_id, str) and call_id:
            converted["id"] = call_id
            call_names[call_id] = name
        calls.append(converted)
    return calls


def parse_arguments(arguments: Any, where: str) -> dict[str, Any]:
    """OpenAI sends arguments as a JSON string, Ollama wants the object."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    param = f"{where}.arguments"
    if not isinstance(arguments, str):
        raise invalid_type(param, "a JSON string", arguments)
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            f"Invalid JSON in '{param}': tool call arguments must be a JSON object encoded as a "
            "string.",
            param=param,
            code="invalid_tool_arguments",
        ) from None
    if not isinstance(parsed, dict):
        raise InvalidRequest(
            f"Invalid value for '{param}': the arguments must encode a JSON object.",
            param=param,
            code="invalid_tool_arguments",
        )
    return parsed


def _tool_result(
    message: dict[str, Any],
    where: str,
    role: str,
    call_names: dict[str, str],
    converted: dict[str, Any],
) -> None:
    call_id = message.get("tool_call_id")
    if call_id is not None and not isinstance(call_id, str):
        raise invalid_type(f"{where}.tool_call_id", "a string", call_id)
    name = message.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid_type(f"{where}.name", "a string", name)
    if role == "tool" and not call_id:
        raise InvalidRequest(
            f"Missing required parameter: '{where}.tool_call_id'.",
            param=f"{where}.tool_call_id",
            code="missing_required_parameter",
        )
    name = name or call_names.get(call_id or "")
    if name:
        converted["tool_name"] = name
    if call_id:
        converted["tool_call_id"] = call_id


# --------------------------------------------------------------------------------------------
# Answer: Ollama → OpenAI


def finish_reason(done_reason: Any, tool_calls: bool) -> str:
    if done_reason == "length":
        return "length"
    return "tool_calls" if tool_calls else "stop"


def tool_calls_out(calls: Any, start: int = 0) -> list[dict[str, Any]]:
    """Ollama tool calls → OpenAI ones: an id on each, a type, arguments as a JSON string.

    ``index`` counts over the whole answer: Ollama's own ``function.index`` may repeat or be
    missing when calls arrive together at the end of a stream.
    """
    out = []
    if not isinstance(calls, list):
        return out
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        call_id = call.get("id")
        out.append(
            {
                "index": start + len(out),
                "id": call_id if isinstance(call_id, str) and call_id else new_id("call_"),
                "type": "function",
                "function": {"name": fn.get("name") or "", "arguments": arguments},
            }
        )
    return out


def completion(answer: dict[str, Any], *, completion_id: str, created: int, model: str) -> dict:
    """A whole Ollama chat answer (``stream: false``) → an OpenAI ``chat.completion``."""
    if "error" in answer:
        raise from_ollama(500, str(answer["error"]), model)
    message = answer.get("message") or {}
    content = message.get("content") or ""
    calls = tool_calls_out(message.get("tool_calls"))
    out_message: dict[str, Any] = {
        "role": "assistant",
        "content": content if content or not calls else None,
        "refusal": None,
    }
    thinking = message.get("thinking")
    if thinking:
        out_message["reasoning_content"] = thinking
    if calls:
        for call in calls:
            del call["index"]
        out_message["tool_calls"] = calls
    logprobs = answer.get("logprobs")
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": out_message,
                "logprobs": {"content": logprobs} if logprobs else None,
                "finish_reason": finish_reason(answer.get("done_reason"), bool(calls)),
            }
        ],
        "usage": common.usage_from(answer),
    }


class ChatStream:
    """Turns Ollama's NDJSON chat chunks into OpenAI ``chat.completion.chunk`` SSE events.

    The parts every event shares (id, created, model) are serialised once; each chunk then costs
    one small ``orjson.dumps`` of its delta.
    """

    __slots__ = ("_calls", "_head", "_include_usage", "_tail", "done")

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        head = orjson.dumps(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }
        )
        self._head = b"data: " + head[:-1] + b',"choices":'
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._include_usage = include_usage
        self._calls = 0
        self.done = False

    def _event(self, delta: bytes, finish: str | None = None, logprobs: Any = None) -> bytes:
        lp = b"null" if logprobs is None else orjson.dumps({"content": logprobs})
        fr = b"null" if finish is None else b'"' + finish.encode() + b'"'
        return (
            self._head
            + b'[{"index":0,"delta":'
            + delta
            + b',"logprobs":'
            + lp
            + b',"finish_reason":'
            + fr
            + b"}]"
            + self._tail
        )

    def start(self) -> bytes:
        return self._event(b'{"role":"assistant","content":""}')

    def feed(self, chunk: dict[str, Any]) -> bytes:
        """One Ollama line → zero or more SSE events (as bytes); the last line also finishes."""
        if "error" in chunk:
            raise from_ollama(500, str(chunk["error"]))
        out = b""
        message = chunk.get("message")
        logprobs = chunk.get("logprobs") or None
        if message:
            delta: dict[str, Any] = {}
            thinking = message.get("thinking")
            if thinking:
                delta["reasoning_content"] = thinking
            content = message.get("content")
            if content:
                delta["content"] = content
            calls = message.get("tool_calls")
            if calls:
                converted = tool_calls_out(calls, self._calls)
                self._calls += len(converted)
                if converted:
                    delta["tool_calls"] = converted
            if delta or logprobs:
                out = self._event(orjson.dumps(delta), logprobs=logprobs)
        elif logprobs:
            out = self._event(b"{}", logprobs=logprobs)
        if chunk.get("done"):
            self.done = True
            out += self._event(b"{}", finish_reason(chunk.get("done_reason"), self._calls > 0))
            if self._include_usage:
                out += (
                    self._head + b'[],"usage":' + orjson.dumps(common.usage_from(chunk)) + b"}\n\n"
                )
            out += b"data: [DONE]\n\n"
        return out
