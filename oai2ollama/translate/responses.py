"""The Responses API: OpenAI ``/v1/responses`` ⇄ Ollama ``/api/chat``.

A Responses request is first rewritten as the equivalent chat request (instructions, input items,
flat tools, ``text.format``, ``max_output_tokens`` …), so it gets every chat rule — aliases,
``num_ctx``, only client-set sampling, forced ``tool_choice`` — from one place. The answer is
built as Responses output items: ``reasoning``, ``message``, ``function_call`` and
``custom_tool_call``; a stream is the named event sequence the SDKs accumulate, with a
``sequence_number`` on every event. Tools of every shape are mapped in :mod:`responses_tools`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import APIError, InvalidRequest, from_ollama
from . import chat, responses_tools, tools, validate
from .options import TOP_LEVEL_OPTIONS
from .stream import new_id, usage_from
from .stream import usage as chat_usage
from .validate import invalid_type

# Responses fields that a local, stateless model cannot honour and a client may rely on.
REFUSED = {
    "background": "Background responses are not supported: send the request and wait for it.",
    "conversation": "Conversations are not stored here; send the whole input instead.",
    "prompt": "Stored prompt templates are not available here; send the input itself.",
}
# Ollama's own fields, passed through as in chat.
PASSED = {"options", "keep_alive", "think", "format", *TOP_LEVEL_OPTIONS}
# Fields the response object repeats as the client sent them, and the input the store keeps,
# with how deep each may nest: a field that holds schemas or arguments (held to MAX_DEPTH
# themselves) gets room for the levels around them.
_AROUND = validate.MAX_DEPTH + 10
ECHOED = {
    "metadata": validate.MAX_DEPTH,
    "user": validate.MAX_DEPTH,
    "reasoning": validate.MAX_DEPTH,
    "tool_choice": validate.MAX_DEPTH,
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
    tools: responses_tools.ToolTable = field(
        default_factory=lambda: responses_tools.ToolTable(chat_tools=[])
    )

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
    refuse_hosted_tools: bool = False,
) -> ResponsesRequest:
    """``history``: the stored input and output of ``previous_response_id``, if any."""
    body = validate.require_object(body)
    for key, why in REFUSED.items():
        if body.get(key):
            raise InvalidRequest(why, param=key, code="unsupported_value")
    store = validate.optional_bool(body, "store")
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
    table = responses_tools.build(body.get("tools"), refuse_hosted=refuse_hosted_tools)
    chat_body = to_chat_body(body, items, table)
    try:
        request = chat.parse_request(
            chat_body, allow_image_urls=allow_image_urls, max_image_urls=max_image_urls
        )
    except InvalidRequest as err:
        err.param = rename_param(err.param)
        raise
    # What the response echoes (and the store keeps) must be writable too.
    for key, limit in ECHOED.items():
        validate.check_depth(body.get(key), key, limit)
    return ResponsesRequest(
        chat=request,
        body=body,
        items=items,
        store=store_available and store is not False,
        previous_response_id=previous,
        tools=table,
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


def to_chat_body(
    body: dict[str, Any],
    items: list[dict[str, Any]],
    table: responses_tools.ToolTable | None = None,
) -> dict[str, Any]:
    """The chat completions request that asks Ollama the same thing."""
    if table is None:
        table = responses_tools.build(body.get("tools"))
    out: dict[str, Any] = {"model": body.get("model"), "stream": body.get("stream")}
    instructions = body.get("instructions")
    messages: list[dict[str, Any]] = []
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid_type("instructions", "a string", instructions)
        messages.append({"role": "system", "content": instructions})
    messages += to_messages(items, table)
    out["messages"] = messages
    if body.get("tools") is not None:
        out["tools"] = table.chat_tools
    choice = body.get("tool_choice")
    if choice is not None:
        out["tool_choice"] = responses_tools.choice(choice, table)
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
        validate.check_depth(fmt.get("schema"), "text.format.schema")
        return {
            "type": "json_schema",
            "json_schema": {"name": fmt.get("name"), "schema": fmt.get("schema")},
        }
    return fmt


def to_messages(
    items: list[dict[str, Any]], table: responses_tools.ToolTable | None = None
) -> list[dict[str, Any]]:
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
        elif kind in ("function_call", "custom_tool_call"):
            call = responses_tools.history_call(item, table)
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant" or "tool_calls" not in last:
                last = {"role": "assistant", "content": None, "tool_calls": []}
                if thinking:
                    last["reasoning_content"], thinking = thinking, ""
                messages.append(last)
            last["tool_calls"].append(call)
        elif kind in ("function_call_output", "custom_tool_call_output"):
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
                "'function_call', 'function_call_output', 'custom_tool_call', "
                "'custom_tool_call_output' and 'reasoning'.",
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
        elif kind == "input_audio":
            parts.append({"type": "input_audio", "input_audio": part.get("input_audio")})
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
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
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


def call_item(
    call: dict[str, Any], table: responses_tools.ToolTable, status: str = "completed"
) -> dict[str, Any]:
    """One OpenAI-style tool call → a ``function_call`` item (with its ``namespace`` when the
    function is inside one) or a ``custom_tool_call`` item."""
    fn = call["function"]
    ref = table.ref(fn["name"])
    call_id = call.get("id") or new_id("call_")
    arguments = fn.get("arguments", "")
    if ref.kind == "custom":
        item: dict[str, Any] = {
            "type": "custom_tool_call",
            "id": new_id("ctc_"),
            "call_id": call_id,
            "name": ref.name,
            "input": tools.custom_input(arguments) if status == "completed" else "",
        }
    else:
        item = {
            "type": "function_call",
            "id": new_id("fc_"),
            "call_id": call_id,
            "name": ref.name,
            "arguments": arguments,
            "status": status,
        }
    if ref.namespace is not None:
        item["namespace"] = ref.namespace
    return item


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


def output_of(
    message: dict[str, Any], table: responses_tools.ToolTable | None = None
) -> list[dict[str, Any]]:
    """A chat answer's message → Responses output items."""
    table = table or responses_tools.ToolTable(chat_tools=[])
    output = []
    if message.get("reasoning_content"):
        output.append(reasoning_item(message["reasoning_content"]))
    if message.get("content"):
        output.append(message_item(message["content"]))
    output += [call_item(call, table) for call in message.get("tool_calls") or []]
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
        output=output_of(choice["message"], request.tools),
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
    """Ollama's NDJSON chat chunks → the Responses API's named SSE events.

    A forced call is judged as in chat (:class:`chat.ChatStream`), holding back only what
    decides the verdict; a custom tool's call, whose input is a string inside the JSON, goes
    out whole when its JSON is complete.
    """

    request: ResponsesRequest
    response_id: str
    created_at: int
    output: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    final: dict[str, Any] | None = None
    _sequence: int = 0
    _open: _Open | None = None
    _calls: int = 0
    _gate: tools.ContentGate = field(init=False)
    _pending: dict[str, Any] | None = None  # a custom tool's call, until its JSON is complete
    _skip: bool = False  # the reader's current call is beyond parallel_tool_calls: false
    usage: dict[str, int] = field(default_factory=lambda: chat_usage(0, 0))

    def __post_init__(self) -> None:
        forced = self.request.chat.tools.forced
        custom = (
            forced is not None
            and forced.name is not None
            and self.request.tools.ref(forced.name).kind == "custom"
        )
        self._gate = tools.ContentGate(forced, custom)

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
            out += self._event(
                "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
            )
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
        elif item["type"] == "custom_tool_call":
            item["input"] = text
            out += self._event("response.custom_tool_call_input.done", **where, input=text)
        if "status" in item:
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
        if kind == "custom_tool_call":
            return out + self._event("response.custom_tool_call_input.delta", **where, delta=text)
        return out + self._event("response.function_call_arguments.delta", **where, delta=text)

    def _whole_calls(self, calls: Any) -> bytes:
        converted = tools.calls_out(calls, self._calls)
        if self.request.chat.tools.single:
            converted = converted[: max(0, 1 - self._calls)]
        self._calls += len(converted)
        out = b""
        for call in converted:
            item = call_item(call, self.request.tools, status="in_progress")
            out += self._begin(item)
            arguments = call["function"]["arguments"]
            if item["type"] == "custom_tool_call":
                out += self._delta(item["type"], tools.custom_input(arguments))
            else:
                item["arguments"] = ""
                out += self._delta(item["type"], arguments)
        return out + self._close()

    # ---- chunks -----------------------------------------------------------------------
    def feed(self, chunk: dict[str, Any]) -> bytes:
        if "error" in chunk:
            raise from_ollama(500, str(chunk["error"]))
        out = b""
        message = chunk.get("message") or {}
        if message.get("thinking"):
            out += self._delta("reasoning", message["thinking"])
        content = message.get("content")
        if content:
            out += self._content(content)
        if message.get("tool_calls"):
            out += self._whole_calls(message["tool_calls"])
        if chunk.get("done"):
            out += self._finish(chunk)
        return out

    def _content(self, content: str) -> bytes:
        forced = self.request.chat.tools.forced
        routed = self._gate.route(content)
        if routed is None:
            return b""
        if isinstance(routed, list):
            return self._reader_calls(routed)
        if self._gate.mode == "text":
            return self._delta("message", routed)
        out = b""
        if self._calls == 0 and forced is not None and forced.name:
            self._calls = 1
            call = {"function": {"name": forced.name, "arguments": ""}}
            out = self._begin(call_item(call, self.request.tools, status="in_progress"))
        return out + self._delta("function_call", routed)

    def _reader_calls(self, events: list[tools.Event]) -> bytes:
        """A required call's reader events → call items, streamed (a custom tool's whole)."""
        out = b""
        for event in events:
            if event[0] == "start":
                self._skip = self.request.chat.tools.single and self._calls > 0
                if self._skip:
                    continue
                call = {"function": {"name": event[1], "arguments": ""}}
                if self.request.tools.ref(event[1]).kind == "custom":
                    self._pending = call
                else:
                    self._calls += 1
                    out += self._begin(call_item(call, self.request.tools, "in_progress"))
            elif self._skip:
                continue
            elif self._pending is not None:
                if event[0] == "args":
                    self._pending["function"]["arguments"] += event[1]
                else:
                    out += self._whole_calls([self._pending])
                    self._pending = None
            elif event[0] == "args":
                out += self._delta("function_call", event[1])
            else:
                out += self._close()
        return out

    def _finish(self, chunk: dict[str, Any]) -> bytes:
        out = b""
        forced = self.request.chat.tools.forced
        gate = self._gate
        if gate.reader is not None and gate.mode == "calls":
            out += self._reader_calls(gate.reader.finish())
        elif gate.buffer:
            # Held back: a custom tool's call judged on the whole answer, or the first
            # characters of an answer that ended before its opening decided anything.
            judged = forced.judge(gate.buffer) if forced and gate.mode == "buffer" else None
            out += self._whole_calls(judged) if judged else self._delta("message", gate.buffer)
        out += self._close()
        self.done = True
        self.usage = usage_from(chunk)
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
