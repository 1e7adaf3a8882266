"""Chat completions: OpenAI ``/v1/chat/completions`` ⇄ Ollama ``/api/chat``.

Two directions, both pure: :func:`parse_request` turns an OpenAI body into the Ollama body, and
:func:`completion` / :class:`ChatStream` turn Ollama's answer (whole, or one NDJSON line at a time)
into the OpenAI answer (whole, or SSE events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import InvalidRequest, from_ollama
from . import audio, tools, validate
from .options import add_ollama_fields
from .stream import ChoiceStream, new_id, usage
from .tools import ToolPlan
from .validate import invalid_type

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
        "prompt_cache_options",
        "prompt_cache_retention",
        "moderation",
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


# The answer's reasoning goes out under each name clients read it from: `reasoning_content` (the
# openai SDKs' users, Continue, Cline, Roo Code, Zed) and `reasoning_text` (VS Code Copilot Chat's
# custom OpenAI-compatible models, which read no other).
REASONING_KEYS = ("reasoning_content", "reasoning_text")

# Where clients put an assistant turn's reasoning when they send it back, in order of preference.
_HISTORY_REASONING_KEYS = ("reasoning_content", "reasoning", "reasoning_text", "cot_summary")

VISION = "vision"  # Ollama's capability for image input
MAX_CHOICES = 8
# Far above any real conversation (the body-size limit binds first for most), but a bound.
MAX_MESSAGES = 20_000


@dataclass(frozen=True, slots=True)
class RemoteImage:
    """An ``http(s)`` image to fetch before the request goes to Ollama."""

    message: int  # index in the Ollama messages
    slot: int  # index in that message's images
    url: str
    param: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat request: what to send to Ollama, and how to answer the client."""

    model: str
    stream: bool
    include_usage: bool
    payload: dict[str, Any]
    n: int = 1
    tools: ToolPlan = field(default_factory=lambda: ToolPlan(tools=[]))
    remote_images: tuple[RemoteImage, ...] = ()
    # Capabilities the model must have besides completion (checked against /api/show).
    needs: frozenset[str] = frozenset()

    @property
    def choices(self) -> int:
        return self.n

    @property
    def text_chars(self) -> int:
        return sum(len(m["content"]) for m in self.payload["messages"])

    def payload_for(self, index: int) -> dict[str, Any]:
        """The request for choice ``index``: with a seed, choice i uses ``seed + i``."""
        seed = self.payload.get("options", {}).get("seed")
        if index == 0 or seed is None:
            return self.payload
        return {**self.payload, "options": {**self.payload["options"], "seed": seed + index}}


# --------------------------------------------------------------------------------------------
# Request: OpenAI → Ollama


def parse_request(
    body: Any, *, allow_image_urls: bool = False, max_image_urls: int | None = None
) -> ChatRequest:
    body = validate.require_object(body)
    model = validate.require_str(body, "model")
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
    if len(messages) > MAX_MESSAGES:
        raise InvalidRequest(
            f"'messages' holds {len(messages)} messages; at most {MAX_MESSAGES} are accepted.",
            param="messages",
            code="invalid_value",
        )

    stream = bool(validate.optional_bool(body, "stream"))
    include_usage = validate.include_usage(body)

    n = validate.optional_int(body, "n", 1) or 1
    if n > MAX_CHOICES:
        raise InvalidRequest(
            f"Invalid value for 'n': at most {MAX_CHOICES} choices per request "
            "(each one is a separate generation).",
            param="n",
            code="invalid_value",
        )
    _refuse_audio(body)

    converted, remote = convert_messages(messages, allow_image_urls)
    if max_image_urls is not None and len(remote) > max_image_urls:
        raise InvalidRequest(
            f"The request holds {len(remote)} image URLs; this server fetches at most "
            f"{max_image_urls} per request (--max-image-urls). Send the others inline as data: "
            "URLs, or in another request.",
            param=remote[max_image_urls].param,
            code="too_many_image_urls",
        )
    tool_plan = tools.plan(body)
    if tool_plan.instruction:
        converted.append({"role": "system", "content": tool_plan.instruction})
    payload: dict[str, Any] = {"model": model, "messages": converted, "stream": stream}
    if tool_plan.tools:
        payload["tools"] = tool_plan.tools
    add_ollama_fields(payload, body, fmt=tool_plan.format)
    if validate.optional_bool(body, "logprobs"):
        payload["logprobs"] = True
        top = validate.optional_int(body, "top_logprobs", 0, hi=20)
        if top is not None:
            payload["top_logprobs"] = top
    elif body.get("top_logprobs") is not None:
        raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
    return ChatRequest(
        model=model,
        stream=stream,
        include_usage=include_usage,
        payload=payload,
        n=n,
        tools=tool_plan,
        remote_images=tuple(remote),
        needs=_needs(messages),
    )


def _needs(messages: list[Any]) -> frozenset[str]:
    """The capabilities the model must have for this conversation's inputs (all parts were
    checked by now): ``audio`` for ``input_audio`` parts, ``vision`` for ``image_url`` ones."""
    kinds = {
        part.get("type")
        for m in messages
        if isinstance(m.get("content"), list)
        for part in m["content"]
        if isinstance(part, dict)
    }
    needs = set()
    if "input_audio" in kinds:
        needs.add(audio.CAPABILITY)
    if "image_url" in kinds:
        needs.add(VISION)
    return frozenset(needs)


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


def convert_messages(
    messages: list[Any], allow_image_urls: bool = False
) -> tuple[list[dict[str, Any]], list[RemoteImage]]:
    """OpenAI messages → Ollama messages, plus the remote images still to be fetched."""
    out: list[dict[str, Any]] = []
    remote: list[RemoteImage] = []
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
            converted["images"] = []
            for slot, (data, url, param) in enumerate(images):
                if url is not None:
                    if not allow_image_urls:
                        raise InvalidRequest(
                            f"Image URLs are not fetched by this server ('{param}'). Send the "
                            "image inline as a data: URL ('data:image/png;base64,...'), or ask "
                            "the operator to start oai2ollama with --allow-image-urls.",
                            param=param,
                            code="image_url_not_allowed",
                        )
                    remote.append(RemoteImage(len(out), slot, url, param))
                converted["images"].append(data)
        if mapped == "assistant":
            thinking = history_reasoning(message)
            if thinking:
                converted["thinking"] = thinking
            calls = _history_calls(message, where, call_names)
            if calls:
                converted["tool_calls"] = calls
        elif mapped == "tool":
            _tool_result(message, where, role, call_names, converted)
        out.append(converted)
    return out, remote


def history_reasoning(message: dict[str, Any]) -> str:
    """The reasoning a client sent back with an assistant turn: the first non-empty text among
    the keys clients use, else the text of OpenRouter-style ``reasoning_details`` (Roo Code,
    Continue). Anything that is not text (encrypted or signed reasoning) is left out."""
    for key in _HISTORY_REASONING_KEYS:
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    details = message.get("reasoning_details")
    if not isinstance(details, list):
        return ""
    texts = []
    for detail in details:
        if not isinstance(detail, dict):
            continue
        summary = detail.get("type") == "reasoning.summary"
        text = detail.get("summary" if summary else "text")
        if isinstance(text, str) and text:
            texts.append(text)
    return "".join(texts)


# An image part: its base64 data, or the URL it must be fetched from, and its param path.
Image = tuple[str, str | None, str]


def _content(content: Any, where: str, role: str) -> tuple[str, list[Image]]:
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
    images: list[Image] = []
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
            images.append(image_source(part.get("image_url"), f"{here}.image_url"))
        elif kind == "input_audio":
            images.append((audio.input_audio(part, here), None, here))
        else:
            raise InvalidRequest(
                f"Unsupported content part type {kind!r} in '{here}': Ollama accepts text, "
                "images (image_url) and audio (input_audio).",
                param=here,
                code="unsupported_value",
            )
    return "\n".join(texts), images


def image_source(image: Any, param: str) -> Image:
    """An OpenAI ``image_url`` (object or bare string) → base64 data, or a URL to fetch."""
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
        return data, None, param
    if url.startswith(("http://", "https://")):
        return "", url, param
    raise InvalidRequest(
        f"Invalid image URL in '{param}': expected a data: URL or an http(s) URL.",
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
            if call.get("type") == "custom":
                items.append((f"{here}.custom", _custom_call(call.get("custom")), call.get("id")))
            else:
                items.append((f"{here}.function", call.get("function"), call.get("id")))
    calls = []
    for here, fn, call_id in items:
        if not isinstance(fn, dict):
            raise invalid_type(here, "an object", fn)
        name = validate.require_str(fn, "name", f"{here}.name")
        converted: dict[str, Any] = {
            "function": {"name": name, "arguments": parse_arguments(fn.get("arguments"), here)}
        }
        if isinstance(call_id, str) and call_id:
            converted["id"] = call_id
            call_names[call_id] = name
        calls.append(converted)
    return calls


def _custom_call(custom: Any) -> Any:
    """An earlier custom tool call, as the function call the model made."""
    if not isinstance(custom, dict):
        return custom
    tool_input = custom.get("input")
    return {"name": custom.get("name"), "arguments": {"input": tool_input or ""}}


def parse_arguments(arguments: Any, where: str) -> dict[str, Any]:
    """OpenAI sends arguments as a JSON string, Ollama wants the object."""
    if arguments is None or arguments == "":
        return {}
    param = f"{where}.arguments"
    if isinstance(arguments, dict):
        validate.check_depth(arguments, param)
        return arguments
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
    validate.check_depth(parsed, param)
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


def finish_reason(done_reason: Any, calls: bool, legacy: bool = False) -> str:
    if done_reason == "length":
        return "length"
    if calls:
        return "function_call" if legacy else "tool_calls"
    return "stop"


def _answer_calls(message: dict[str, Any], plan: ToolPlan) -> tuple[str, list[dict[str, Any]]]:
    """The answer's text and OpenAI tool calls, with a forced call read out of the text."""
    content = message.get("content") or ""
    calls = message.get("tool_calls")
    if plan.forced is not None and not calls and content:
        parsed = plan.forced.judge(content)
        if parsed is not None:
            content, calls = "", parsed
    out = tools.calls_out(calls, custom=plan.custom)
    if plan.single:
        out = out[:1]
    return content, out


def choice(answer: dict[str, Any], index: int, plan: ToolPlan) -> dict[str, Any]:
    """One whole Ollama chat answer (``stream: false``) → one OpenAI choice."""
    if "error" in answer:
        raise from_ollama(500, str(answer["error"]))
    message = answer.get("message") or {}
    content, calls = _answer_calls(message, plan)
    out_message: dict[str, Any] = {
        "role": "assistant",
        "content": content if content or not calls else None,
        "refusal": None,
    }
    thinking = message.get("thinking")
    if thinking:
        for key in REASONING_KEYS:
            out_message[key] = thinking
    for call in calls:
        del call["index"]
    if calls and plan.legacy:
        out_message["function_call"] = calls[0]["function"]
    elif calls:
        out_message["tool_calls"] = calls
    logprobs = answer.get("logprobs")
    return {
        "index": index,
        "message": out_message,
        "logprobs": {"content": logprobs} if logprobs else None,
        "finish_reason": finish_reason(answer.get("done_reason"), bool(calls), plan.legacy),
    }


def completion(
    answers: list[dict[str, Any]], request: ChatRequest, *, completion_id: str, created: int
) -> dict[str, Any]:
    """Ollama's answers (one per choice) → an OpenAI ``chat.completion``."""
    choices = [choice(answer, i, request.tools) for i, answer in enumerate(answers)]
    prompt = answers[0].get("prompt_eval_count") or 0  # the same prompt for every choice
    generated = sum(a.get("eval_count") or 0 for a in answers)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": request.model,
        "choices": choices,
        "usage": usage(prompt, generated),
    }


class ChatStream(ChoiceStream):
    """Turns Ollama's NDJSON chat chunks into OpenAI ``chat.completion.chunk`` SSE events.

    A forced call gets the verdict the whole answer would get (:meth:`tools.ForcedCall.judge`),
    and only the part of the answer that decides it is held back: a named call's opening
    (:func:`tools.opening`), a ``required`` call's JSON up to its first function name
    (:class:`tools.CallReader`). Then the arguments stream as they come.
    """

    __slots__ = ("_calls", "_gate", "_pending", "_plan", "_skip")

    def __init__(
        self, completion_id: str, created: int, request: ChatRequest, index: int = 0
    ) -> None:
        super().__init__(
            completion_id=completion_id,
            obj="chat.completion.chunk",
            created=created,
            model=request.model,
            index=index,
            key="delta",
            include_usage=request.include_usage,
            solo=request.n == 1,
        )
        self._plan = request.tools
        self._calls = 0
        forced = request.tools.forced
        custom = forced is not None and forced.name in request.tools.custom
        self._gate = tools.ContentGate(forced, custom)
        self._skip = False  # the reader's current call is beyond parallel_tool_calls: false
        self._pending: dict[str, Any] | None = None  # a custom tool's call being read

    def start(self) -> bytes:
        return self._event(b'{"role":"assistant","content":""}')

    def feed(self, chunk: dict[str, Any]) -> bytes:
        """One Ollama line → zero or more SSE events (as bytes); the last line also finishes."""
        if "error" in chunk:
            raise from_ollama(500, str(chunk["error"]))
        out = b""
        message = chunk.get("message")
        logprobs = chunk.get("logprobs")
        lp = orjson.dumps({"content": logprobs}) if logprobs else None
        if message:
            delta: dict[str, Any] = {}
            thinking = message.get("thinking")
            if thinking:
                for key in REASONING_KEYS:
                    delta[key] = thinking
            content = message.get("content")
            if content:
                self._content(delta, content)
            calls = message.get("tool_calls")
            if calls:
                self._add_calls(delta, calls)
            if delta or lp:
                out = self._event(orjson.dumps(delta), logprobs=lp)
        elif lp:
            out = self._event(b"{}", logprobs=lp)
        if chunk.get("done"):
            out += self._finish(chunk)
        return out

    def _content(self, delta: dict[str, Any], content: str) -> None:
        routed = self._gate.route(content)
        if routed is None:
            return
        if isinstance(routed, list):
            self._reader_calls(delta, routed)
        elif self._gate.mode == "text":
            delta["content"] = routed
        else:
            self._forced_fragment(delta, routed)

    def _reader_calls(self, delta: dict[str, Any], events: list[tools.Event]) -> None:
        """A required call's reader events → tool-call deltas, one entry per call."""
        entries: list[dict[str, Any]] = []
        for event in events:
            if self._pending is not None:  # a custom tool's call: sent whole when complete
                if event[0] == "args":
                    self._pending["function"]["arguments"] += event[1]
                elif event[0] == "end":
                    converted = tools.calls_out([self._pending], self._calls, self._plan.custom)
                    self._calls += 1
                    entries += converted
                    self._pending = None
                continue
            if event[0] == "start":
                self._skip = self._plan.single and self._calls > 0
                if not self._skip and event[1] in self._plan.custom:
                    self._pending = {"function": {"name": event[1], "arguments": ""}}
                elif not self._skip:
                    function = {"name": event[1], "arguments": ""}
                    entries.append(
                        {"index": self._calls, "id": new_id("call_"), "type": "function"}
                        | {"function": function}
                    )
                    self._calls += 1
            elif event[0] == "args" and not self._skip:
                if not entries or entries[-1]["index"] != self._calls - 1:
                    entries.append({"index": self._calls - 1, "function": {"arguments": ""}})
                entries[-1]["function"]["arguments"] += event[1]
        if entries:
            self._put_calls(delta, entries)

    def _forced_fragment(self, delta: dict[str, Any], content: str) -> None:
        """A named forced call: the constrained text *is* the arguments, so stream it as such."""
        assert self._plan.forced is not None
        if self._calls == 0:
            self._calls = 1
            call = {"name": self._plan.forced.name, "arguments": content}
            first = {"index": 0, "id": new_id("call_"), "type": "function", "function": call}
            self._put_calls(delta, [first])
        else:
            self._put_calls(delta, [{"index": 0, "function": {"arguments": content}}])

    def _add_calls(self, delta: dict[str, Any], calls: Any) -> None:
        converted = tools.calls_out(calls, self._calls, self._plan.custom)
        if self._plan.single:
            converted = converted[: max(0, 1 - self._calls)]
        self._calls += len(converted)
        if converted:
            self._put_calls(delta, converted)

    def _put_calls(self, delta: dict[str, Any], calls: list[dict[str, Any]]) -> None:
        if self._plan.legacy:
            delta["function_call"] = calls[0]["function"]
        else:
            delta["tool_calls"] = calls

    def _finish(self, chunk: dict[str, Any]) -> bytes:
        out = b""
        delta: dict[str, Any] = {}
        gate = self._gate
        if gate.reader is not None and gate.mode == "calls":
            self._reader_calls(delta, gate.reader.finish())
        elif gate.mode == "buffer" and self._plan.forced is not None:
            judged = self._plan.forced.judge(gate.buffer)
            if judged:
                self._add_calls(delta, judged)
            elif gate.buffer:
                delta["content"] = gate.buffer
        elif gate.buffer:
            # The answer ended before its opening decided anything: it is text.
            delta["content"] = gate.buffer
        if delta:
            out = self._event(orjson.dumps(delta))
        reason = finish_reason(chunk.get("done_reason"), self._calls > 0, self._plan.legacy)
        return out + self._finished(chunk, reason)
