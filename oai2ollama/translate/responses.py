"""The Responses API: OpenAI ``/v1/responses`` ⇄ Ollama ``/api/chat``.

A Responses request is first rewritten as the equivalent chat request (instructions, input items,
flat tools, ``text.format``, ``max_output_tokens`` …), so it gets every chat rule — aliases,
``num_ctx``, only client-set sampling, forced ``tool_choice`` — from one place. The answer is
built as Responses output items: ``reasoning``, ``message`` and ``function_call``; a stream is the
named event sequence the SDKs accumulate, with a ``sequence_number`` on every event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import APIError, InvalidRequest, from_ollama
from . import chat, common, tools
from .common import invalid_type, new_id

# Responses fields that a local, stateless model cannot honour and a client may rely on.
REFUSED = {
    "background": "Background responses are not supported: send the request and wait for it.",
    "conversation": "Conversations are not stored here; send the whole input instead.",
    "prompt": "Stored prompt templates are not available here; send the input itself.",
}
# Ollama's own fields, passed through as in chat.
PASSED = {"options", "keep_alive", "think", "format", *common.TOP_LEVEL_OPTIONS}
# Fields the response object repeats as the client sent them, and the input the store keeps,
# with how deep each may nest: a field that holds schemas or arguments (held to MAX_DEPTH
# themselves) gets room for the levels around them.
_AROUND = common.MAX_DEPTH + 10
ECHOED = {
    "metadata": common.MAX_DEPTH,
    "user": common.MAX_DEPTH,
    "reasoning": common.MAX_DEPTH,
    "tool_choice": common.MAX_DEPTH,
    "text": _AROUND,
    "tools": _AROUND,
    "input": _AROUND,
}
# What a renamed chat field is called in the Responses API, for error messages.
PARAMS = {
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
    "reasoning_effort": "reasoning.effort",
    "messages": "input",
}


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    chat: chat.ChatRequest
    body: dict[str, Any]  # the client's request, for the fields a response echoes
    items: list[dict[str, Any]]  # the conversation so far, as input items (for the store)
    store: bool
    previous_response_id: str | None = None

    @property
    def model(self) -> str:
        return self.chat.model

    @property
    def stream(self) -> bool:
        return self.chat.stream


def parse_request(
    body: Any,
    *,
    history: list[dict[str, Any]] | None = None,
    allow_image_urls: bool = False,
    max_image_urls: int | None = None,
    store_available: bool = False,
) -> ResponsesRequest:
    """``history``: the stored input and output of ``previous_response_id``, if any."""
    body = common.require_object(body)
    for key, why in REFUSED.items():
        if body.get(key):
            raise InvalidRequest(why, param=key, code="unsupported_value")
    store = common.optional_bool(body, "store")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise invalid_type("previous_response_id", "a string", previous)
    if not store_available and (store or previous):
        param = "previous_response_id" if previous else "store"
        raise InvalidRequest(
            "This server keeps no responses (it was started with --responses-store 0): send "
            "the whole conversation as 'input' and set 'store' to false.",
            param=param,
            code="unsupported_value",
        )
    items = list(history or []) + input_items(body.get("input"))
    chat_body = to_chat_body(body, items)
    try:
        request = chat.parse_request(
            chat_body, allow_image_urls=allow_image_urls, max_image_urls=max_image_urls
        )
    except InvalidRequest as err:
        err.param = rename_param(err.param)
        raise
    # What the response echoes (and the store keeps) must be writable too.
    for key, limit in ECHOED.items():
        common.check_depth(body.get(key), key, limit)
    return ResponsesRequest(
        chat=request,
        body=body,
        items=items,
        store=store_available and store is not False,
        previous_response_id=previous,
    )


def rename_param(param: str | None) -> str | None:
    if param is None:
        return None
    head, sep, rest = param.partition("[")
    head, dot, tail = head.partition(".")
    name = PARAMS.get(head, head) + (dot + tail) + sep + rest
    return name.replace(".function.", ".") if name.startswith("tools[") else name


def input_items(value: Any) -> list[dict[str, Any]]:
    if value is None:
        raise InvalidRequest(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array of input items", value)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid_type(f"input[{i}]", "an object", item)
    return value


def to_chat_body(body: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat completions request that asks Ollama the same thing."""
    out: dict[str, Any] = {"model": body.get("model"), "stream": body.get("stream")}
    instructions = body.get("instructions")
    messages: list[dict[str, Any]] = []
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid_type("instructions", "a string", instructions)
        messages.append({"role": "system", "content": instructions})
    messages += to_messages(items)
    out["messages"] = messages
    if body.get("tools") is not None:
        out["tools"] = to_chat_tools(body["tools"])
    choice = body.get("tool_choice")
    if choice is not None:
        out["tool_choice"] = to_chat_tool_choice(choice)
    # `reasoning: {effort}` is read by the chat rules as it is.
    for key in ("parallel_tool_calls", "temperature", "top_p", "reasoning"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("max_output_tokens") is not None:
        out["max_completion_tokens"] = body["max_output_tokens"]
    text = body.get("text")
    if text is not None:
        if not isinstance(text, dict):
            raise invalid_type("text", "an object", text)
        fmt = text.get("format")
        if fmt is not None:
            out["response_format"] = to_response_format(fmt)
    for key in PASSED.intersection(body):
        out[key] = body[key]
    return out


def to_response_format(fmt: Any) -> dict[str, Any]:
    if not isinstance(fmt, dict):
        raise invalid_type("text.format", "an object", fmt)
    if fmt.get("type") == "json_schema":
        common.check_depth(fmt.get("schema"), "text.format.schema")
        return {
            "type": "json_schema",
            "json_schema": {"name": fmt.get("name"), "schema": fmt.get("schema")},
        }
    return fmt


def to_chat_tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise invalid_type("tools", "an array", value)
    out = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise invalid_type(f"tools[{i}]", "an object", tool)
        if tool.get("type", "function") != "function":
            raise InvalidRequest(
                f"Unsupported tool type {tool.get('type')!r} in 'tools[{i}].type': only "
                "'function' tools can be run by a local model.",
                param=f"tools[{i}].type",
                code="unsupported_value",
            )
        fn = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
        out.append({"type": "function", "function": fn})
    return out


def to_chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function":
            return {"type": "function", "function": {"name": choice.get("name")}}
        if kind == "allowed_tools":
            allowed = [
                {"type": "function", "function": {"name": t.get("name")}}
                for t in choice.get("tools") or []
                if isinstance(t, dict)
            ]
            return {
                "type": "allowed_tools",
                "allowed_tools": {"mode": choice.get("mode"), "tools": allowed},
            }
    return choice


def to_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items → chat messages: function calls join the assistant turn they belong to,
    reasoning goes to the next assistant turn as its reasoning."""
    messages: list[dict[str, Any]] = []
    thinking = ""
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            message = {"role": role, "content": _content(item.get("content"), where)}
            if role == "assistant" and thinking:
                message["reasoning_content"], thinking = thinking, ""
            messages.append(message)
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")},
            }
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant" or "tool_calls" not in last:
                last = {"role": "assistant", "content": None, "tool_calls": []}
                if thinking:
                    last["reasoning_content"], thinking = thinking, ""
                messages.append(last)
            last["tool_calls"].append(call)
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = _content(output, f"{where}.output")
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": output}
            )
        elif kind == "reasoning":
            thinking += _reasoning_text(item)
        else:
            raise InvalidRequest(
                f"Unsupported input item type {kind!r} in '{where}': supported are 'message', "
                "'function_call', 'function_call_output' and 'reasoning'.",
                param=f"{where}.type",
                code="unsupported_value",
            )
    return messages


def _content(content: Any, where: str) -> Any:
    """Responses content parts → chat content parts."""
    if not isinstance(content, list):
        return content
    parts: list[Any] = []
    for j, part in enumerate(content):
        here = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise invalid_type(here, "an object", part)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise InvalidRequest(
                    f"'{here}' needs an 'image_url' (a data: or http(s) URL); file ids are not "
                    "available here.",
                    param=here,
                    code="unsupported_value",
                )
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise InvalidRequest(
                f"Unsupported content part type {kind!r} in '{here}'.",
                param=here,
                code="unsupported_value",
            )
    return parts


def _reasoning_text(item: dict[str, Any]) -> str:
    texts = [
        part.get("text", "")
        for key in ("content", "summary")
        for part in item.get(key) or []
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    ]
    return "\n".join(t for t in texts if t)


# --------------------------------------------------------------------------------------------
# Answer


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def reasoning_item(text: str, status: str = "completed") -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {"type": "reasoning", "id": new_id("rs_"), "summary": summary, "status": status}


def message_item(text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status else []
    return {
        "type": "message",
        "id": new_id("msg_"),
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    fn = call["function"]
    return {
        "type": "function_call",
        "id": new_id("fc_"),
        "call_id": call.get("id") or new_id("call_"),
        "name": fn["name"],
        "arguments": fn.get("arguments", ""),
        "status": status,
    }


def response_object(
    request: ResponsesRequest,
    response_id: str,
    created_at: int,
    *,
    status: str,
    output: list[dict[str, Any]],
    use: dict[str, Any] | None = None,
    incomplete: bool = False,
    error: APIError | None = None,
) -> dict[str, Any]:
    body = request.body
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": {"code": error.code or error.type, "message": error.message} if error else None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": request.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": request.store,
        "temperature": body.get("temperature"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "usage": use,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def output_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat answer's message → Responses output items."""
    output = []
    if message.get("reasoning_content"):
        output.append(reasoning_item(message["reasoning_content"]))
    if message.get("content"):
        output.append(message_item(message["content"]))
    output += [call_item(call) for call in message.get("tool_calls") or []]
    return output


def response(
    answer: dict[str, Any], request: ResponsesRequest, response_id: str, created_at: int
) -> dict[str, Any]:
    """A whole Ollama chat answer → a Responses ``response`` object."""
    choice = chat.choice(answer, 0, request.chat.tools)
    incomplete = choice["finish_reason"] == "length"
    return response_object(
        request,
        response_id,
        created_at,
        status="incomplete" if incomplete else "completed",
        output=output_of(choice["message"]),
        use=usage(answer.get("prompt_eval_count") or 0, answer.get("eval_count") or 0),
        incomplete=incomplete,
    )


@dataclass
class _Open:
    """The output item being streamed now."""

    index: int
    item: dict[str, Any]
    text: str = ""


@dataclass
class ResponsesStream:
    """Ollama's NDJSON chat chunks → the Responses API's named SSE events."""

    request: ResponsesRequest
    response_id: str
    created_at: int
    output: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    final: dict[str, Any] | None = None
    _sequence: int = 0
    _open: _Open | None = None
    _buffer: str = ""
    _calls: int = 0
    usage: dict[str, int] = field(default_factory=lambda: common.usage(0, 0))

    def _event(self, kind: str, **data: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        output = self.output if status != "in_progress" else []
        return response_object(
            self.request, self.response_id, self.created_at, status=status, output=output, **extra
        )

    def start(self) -> bytes:
        snapshot = self._snapshot("in_progress")
        return self._event("response.created", response=snapshot) + self._event(
            "response.in_progress", response=snapshot
        )

    # ---- items ------------------------------------------------------------------------
    def _begin(self, item: dict[str, Any]) -> bytes:
        out = self._close()
        self._open = _Open(len(self.output), item)
        self.output.append(item)
        out += self._event("response.output_item.added", output_index=self._open.index, item=item)
        where = {"item_id": item["id"], "output_index": self._open.index}
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": []}
            out += self._event("response.content_part.added", **where, content_index=0, part=part)
        elif item["type"] == "reasoning":
            part = {"type": "summary_text", "text": ""}
            out += self._event(
                "response.reasoning_summary_part.added", **where, summary_index=0, part=part
            )
        return out

    def _close(self) -> bytes:
        current, self._open = self._open, None
        if current is None:
            return b""
        item, text = current.item, current.text
        where = {"item_id": item["id"], "output_index": current.index}
        out = b""
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": []}
            out += self._event("response.output_text.done", **where, content_index=0, text=text)
            out += self._event("response.content_part.done", **where, content_index=0, part=part)
            item["content"] = [part]
        elif item["type"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            out += self._event(
                "response.reasoning_summary_text.done", **where, summary_index=0, text=text
            )
            out += self._event(
                "response.reasoning_summary_part.done", **where, summary_index=0, part=part
            )
            item["summary"] = [part]
        elif item["type"] == "function_call":
            item["arguments"] = text
            out += self._event(
                "response.function_call_arguments.done", **where, name=item["name"], arguments=text
            )
        item["status"] = "completed"
        return out + self._event("response.output_item.done", output_index=current.index, item=item)

    def _delta(self, kind: str, text: str) -> bytes:
        """Append ``text`` to the open item of ``kind``, opening one if needed."""
        out = b""
        if self._open is None or self._open.item["type"] != kind:
            if kind == "message":
                out = self._begin(message_item("", status="in_progress") | {"content": []})
            elif kind == "reasoning":
                out = self._begin(reasoning_item("", status="in_progress"))
        assert self._open is not None
        self._open.text += text
        where = {"item_id": self._open.item["id"], "output_index": self._open.index}
        if kind == "message":
            return out + self._event(
                "response.output_text.delta", **where, content_index=0, delta=text, logprobs=[]
            )
        if kind == "reasoning":
            return out + self._event(
                "response.reasoning_summary_text.delta", **where, summary_index=0, delta=text
            )
        return out + self._event("response.function_call_arguments.delta", **where, delta=text)

    def _whole_calls(self, calls: Any) -> bytes:
        converted = tools.calls_out(calls, self._calls)
        if self.request.chat.tools.single:
            converted = converted[: max(0, 1 - self._calls)]
        self._calls += len(converted)
        out = b""
        for call in converted:
            item = call_item(call, status="in_progress")
            arguments, item["arguments"] = item["arguments"], ""
            out += self._begin(item)
            out += self._delta("function_call", arguments)
        return out + self._close()

    # ---- chunks -----------------------------------------------------------------------
    def feed(self, chunk: dict[str, Any]) -> bytes:
        if "error" in chunk:
            raise from_ollama(500, str(chunk["error"]))
        out = b""
        message = chunk.get("message") or {}
        plan = self.request.chat.tools
        if message.get("thinking"):
            out += self._delta("reasoning", message["thinking"])
        content = message.get("content")
        if content:
            if plan.forced is None:
                out += self._delta("message", content)
            elif plan.forced.name and not message.get("tool_calls"):
                if self._calls == 0:
                    self._calls = 1
                    call = {"function": {"name": plan.forced.name, "arguments": ""}}
                    out += self._begin(call_item(call, status="in_progress"))
                out += self._delta("function_call", content)
            else:
                self._buffer += content
        if message.get("tool_calls"):
            out += self._whole_calls(message["tool_calls"])
        if chunk.get("done"):
            out += self._finish(chunk)
        return out

    def _finish(self, chunk: dict[str, Any]) -> bytes:
        out = b""
        plan = self.request.chat.tools
        if self._buffer:
            parsed = plan.forced.parse(self._buffer) if plan.forced else None
            out += self._whole_calls(parsed) if parsed else self._delta("message", self._buffer)
        out += self._close()
        self.done = True
        self.usage = common.usage_from(chunk)
        incomplete = chunk.get("done_reason") == "length"
        self.final = self._snapshot(
            "incomplete" if incomplete else "completed",
            use=usage(self.usage["prompt_tokens"], self.usage["completion_tokens"]),
            incomplete=incomplete,
        )
        kind = "response.incomplete" if incomplete else "response.completed"
        return out + self._event(kind, response=self.final)

    def failed(self, err: APIError) -> bytes:
        """The last event of a stream that broke: ``response.failed``, with what is known."""
        out = self._close()
        self.final = self._snapshot("failed", error=err)
        return out + self._event("response.failed", response=self.final)
