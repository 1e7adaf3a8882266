"""Editors' and agents' chat completions, as their source sends and reads them.

Each test posts a request body shaped like the client's (the extra message keys it adds, the way
it sends reasoning and tool results back) and reads the stream the way that client does: which
key it takes reasoning from, how it puts tool calls together, what it needs at the end. The
clients: VS Code Copilot Chat's custom OpenAI-compatible models (bring your own key), Cline (the
AI SDK's OpenAI-compatible provider), Roo Code's OpenAI Compatible provider, and Zed.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import ShimFactory
from .fake_ollama import PNG, FakeOllama, Reply
from .samples import WEATHER_PARAMETERS, WEATHER_TOOL

MODEL = "qwen3:8b"  # the test Ollama's model with tools and thinking
THINKING = "The user wants the weather, so I call the tool."
TEXT = "Let me check."
CALL = {"id": "call_new1", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
EARLIER_CALL = {
    "id": "call_old1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}
EARLIER_REASONING = "Paris first."


def post_stream(base_url: str, body: dict[str, Any]) -> list[str]:
    """POST a chat completion and return the lines of the SSE body."""
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer local"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = response.read().decode()
    return [line for line in raw.split("\n") if line]


def reply(ollama: FakeOllama) -> None:
    ollama.queue(Reply(thinking=THINKING, content=TEXT, tool_calls=[CALL], eval_count=9))


def sent_history(ollama: FakeOllama) -> list[dict[str, Any]]:
    return ollama.last().body["messages"]


@dataclass
class Read:
    """What a client took from one streamed answer."""

    reasoning: str = ""
    text: str = ""
    calls: list[dict[str, str]] = field(default_factory=list)
    finish: str | None = None
    usage: dict[str, Any] | None = None
    done: bool = False
    ended: list[str] = field(default_factory=list)  # calls a client closed on finish_reason


def check_read(read: Read) -> None:
    assert read.reasoning == THINKING
    assert read.text == TEXT
    assert len(read.calls) == 1
    (call,) = read.calls
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Rome"}
    assert call["id"] == "call_new1"
    assert read.finish == "tool_calls"
    assert read.usage is not None
    assert read.usage["completion_tokens"] == 9
    assert read.done


# --------------------------------------------------------------------------------------------
# VS Code Copilot Chat, custom OpenAI-compatible model (src/platform/networking/node/stream.ts)


def copilot_read(lines: list[str]) -> Read:
    read = Read()
    for line in lines:
        if line.startswith(":"):  # SSE comments are skipped
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            read.done = True
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            read.usage = chunk["usage"]
        if chunk.get("choices") is None:
            assert "error" not in chunk, chunk
            continue
        for choice in chunk["choices"]:
            delta = choice.get("delta") or {}
            # The only keys it takes reasoning from, in this order.
            thinking = (
                delta.get("cot_summary") or delta.get("reasoning_text") or delta.get("thinking")
            )
            read.reasoning += thinking or ""
            read.text += delta.get("content") or ""
            for piece in delta.get("tool_calls") or []:
                # Matched by id when there is one, else the fragment continues the last call.
                current = next((c for c in read.calls if c["id"] == piece.get("id")), None)
                if current is None and read.calls and not piece.get("id"):
                    current = read.calls[-1]
                if current is None:
                    current = {"id": piece.get("id") or "", "name": "", "arguments": ""}
                    read.calls.append(current)
                fn = piece.get("function") or {}
                current["name"] = fn.get("name") or current["name"]
                current["arguments"] += fn.get("arguments") or ""
            read.finish = choice.get("finish_reason") or read.finish
    return read


def test_copilot_custom_openai_model(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    """The body of a BYOK request for a model configured with ``thinking: true``: no
    temperature, ``max_completion_tokens``, ``copilot_cache_control`` on messages, and an
    earlier turn's reasoning sent back as ``cot_id``/``cot_summary``."""
    reply(ollama)
    body = {
        "messages": [
            {"role": "system", "content": "You are an expert AI programming assistant."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Weather in Paris, then Rome?"}],
                "copilot_cache_control": {"type": "ephemeral"},
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [EARLIER_CALL],
                "cot_id": "cot_1",
                "cot_summary": EARLIER_REASONING,
            },
            {
                "role": "tool",
                "content": "Sunny",
                "tool_call_id": "call_old1",
                "copilot_cache_control": {"type": "ephemeral"},
            },
        ],
        "model": MODEL,
        "top_p": 1,
        "max_completion_tokens": 16000,
        "n": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [WEATHER_TOOL],
    }
    read = copilot_read(post_stream(make_shim(), body))
    check_read(read)
    history = sent_history(ollama)
    assert history[1] == {"role": "user", "content": "Weather in Paris, then Rome?"}
    assert history[2]["thinking"] == EARLIER_REASONING
    assert history[3]["tool_name"] == "get_weather"
    assert ollama.last().body["options"]["num_predict"] == 16000


def test_copilot_image_part_with_media_type(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    """Copilot adds ``media_type`` inside ``image_url``; the image still reaches Ollama."""
    data = "data:image/png;base64," + base64.b64encode(PNG).decode()
    body = {
        "model": "llava:7b",
        "stream": True,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": data, "media_type": "image/png"}},
                ],
            }
        ],
    }
    read = copilot_read(post_stream(make_shim(), body))
    assert read.text == Reply().content
    assert read.finish == "stop"
    assert sent_history(ollama)[0]["images"] == [data.split(",", 1)[1]]


# --------------------------------------------------------------------------------------------
# Cline: the AI SDK's OpenAI-compatible chat model (@ai-sdk/openai-compatible)


def ai_sdk_read(lines: list[str]) -> Read:
    read = Read()
    by_index: dict[int, dict[str, str]] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        assert line.startswith("data: "), line
        data = line[len("data: ") :]
        if data == "[DONE]":
            read.done = True
            continue
        chunk = json.loads(data)
        assert "error" not in chunk, chunk
        if chunk.get("usage") is not None:
            read.usage = chunk["usage"]
        choice = chunk["choices"][0] if chunk["choices"] else None
        if choice is None:
            continue
        read.finish = choice.get("finish_reason") or read.finish
        delta = choice.get("delta")
        if delta is None:
            continue
        read.reasoning += delta.get("reasoning_content") or delta.get("reasoning") or ""
        read.text += delta.get("content") or ""
        for piece in delta.get("tool_calls") or []:
            index = piece["index"]
            if index not in by_index:
                # A new call must come with its id and its name.
                assert piece.get("id"), piece
                assert piece["function"].get("name"), piece
                by_index[index] = {"id": piece["id"], "name": piece["function"]["name"]}
                by_index[index]["arguments"] = ""
            by_index[index]["arguments"] += piece["function"].get("arguments") or ""
    read.calls = [by_index[i] for i in sorted(by_index)]
    return read


def test_cline_openai_compatible(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    """The AI SDK sends reasoning back as ``reasoning_content``, ``content: null`` beside tool
    calls, and tools with ``strict``."""
    reply(ollama)
    tool = {"type": "function", "function": {**WEATHER_TOOL["function"], "strict": False}}
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are Cline, a highly skilled software engineer."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris, then Rome?"}]},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": EARLIER_REASONING,
                "tool_calls": [EARLIER_CALL],
            },
            {"role": "tool", "tool_call_id": "call_old1", "content": "Sunny"},
        ],
        "tools": [tool],
        "tool_choice": "auto",
        "reasoning_effort": "medium",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    read = ai_sdk_read(post_stream(make_shim(), body))
    check_read(read)
    history = sent_history(ollama)
    assert history[2]["thinking"] == EARLIER_REASONING
    assert history[2]["content"] == ""
    assert ollama.last().body["think"] == "medium"


# --------------------------------------------------------------------------------------------
# Roo Code, OpenAI Compatible provider (src/api/providers/openai.ts)


def roo_read(lines: list[str]) -> Read:
    read = Read()
    active: set[str] = set()
    partial: dict[int, dict[str, str]] = {}
    for line in lines:
        if not line.startswith("data: ") or line == "data: [DONE]":
            read.done = read.done or line == "data: [DONE]"
            continue
        chunk = json.loads(line[len("data: ") :])
        choices = chunk.get("choices") or []
        delta = choices[0].get("delta") or {} if choices else {}
        finish = choices[0].get("finish_reason") if choices else None
        read.text += delta.get("content") or ""
        read.reasoning += delta.get("reasoning_content") or ""  # the only reasoning key it reads
        for piece in delta.get("tool_calls") or []:
            if piece.get("id"):
                active.add(piece["id"])
            call = partial.setdefault(piece["index"], {"id": "", "name": "", "arguments": ""})
            fn = piece.get("function") or {}
            call["id"] = piece.get("id") or call["id"]
            call["name"] = fn.get("name") or call["name"]
            call["arguments"] += fn.get("arguments") or ""
        if finish == "tool_calls" and active:  # calls are closed on this finish_reason
            read.ended += sorted(active)
            active.clear()
        read.finish = finish or read.finish
        if chunk.get("usage"):
            read.usage = chunk["usage"]
    read.calls = [partial[i] for i in sorted(partial)]
    return read


def test_roo_code_openai_compatible(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    """Roo Code marks text parts with ``cache_control``, leaves ``content`` out of an assistant
    turn that only calls tools, sends OpenRouter-style ``reasoning_details``, and sends
    ``temperature: 0`` unless the user set one."""
    reply(ollama)
    body = {
        "model": MODEL,
        "temperature": 0,
        "messages": [
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "You are Roo.", "cache_control": {"type": "ephemeral"}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<task>Weather in Paris, then Rome?</task>"},
                    {
                        "type": "text",
                        "text": "<environment_details>none</environment_details>",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            },
            {
                "role": "assistant",
                "reasoning_details": [
                    {"type": "reasoning.text", "text": EARLIER_REASONING, "index": 0},
                    {"type": "reasoning.encrypted", "data": "opaque", "index": 1},
                ],
                "tool_calls": [EARLIER_CALL],
            },
            {"role": "tool", "tool_call_id": "call_old1", "content": "(empty)"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "reasoning_effort": "medium",
        "tools": [WEATHER_TOOL],
        "parallel_tool_calls": True,
        "max_completion_tokens": 8192,
    }
    read = roo_read(post_stream(make_shim(), body))
    check_read(read)
    assert read.ended == ["call_new1"]
    history = sent_history(ollama)
    assert history[0] == {"role": "system", "content": "You are Roo."}
    assert history[1]["content"] == (
        "<task>Weather in Paris, then Rome?</task>\n<environment_details>none</environment_details>"
    )
    assert history[2]["thinking"] == EARLIER_REASONING
    assert history[2]["content"] == ""
    assert ollama.last().body["options"]["temperature"] == 0


# --------------------------------------------------------------------------------------------
# Zed (crates/open_ai and the OpenAI event mapper in language_models)

ZED_ROLES = {"user", "assistant", "system", "tool"}


def zed_event(data: str) -> dict[str, Any]:
    """One data line as Zed's strict parser takes it: an error object, or an event whose
    ``choices`` is an array and whose usage, when present, has all three counts."""
    event = json.loads(data)
    if "error" in event:
        assert isinstance(event["error"]["message"], str)
        return event
    assert isinstance(event["choices"], list), event
    usage = event.get("usage")
    if usage is not None:
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            assert isinstance(usage[key], int), usage
    for choice in event["choices"]:
        assert isinstance(choice["index"], int)
        delta = choice.get("delta")
        if delta is not None:
            assert delta.get("role") in ZED_ROLES | {None}
            assert isinstance(delta.get("content"), str | None)
            for piece in delta.get("tool_calls") or []:
                assert isinstance(piece["index"], int), piece
    return event


def zed_read(lines: list[str]) -> Read:
    read = Read()
    pending: dict[int, dict[str, str]] = {}
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
        elif line.startswith("data:"):
            data = line[len("data:") :]
        else:
            continue  # comments and other fields are skipped
        if data == "[DONE]":
            read.done = True
            continue
        event = zed_event(data)
        assert "error" not in event, event
        if event.get("usage") is not None:
            read.usage = event["usage"]
        if not event["choices"]:
            continue
        choice = event["choices"][0]
        delta = choice.get("delta") or {}
        read.reasoning += delta.get("reasoning_content") or ""
        read.text += delta.get("content") or ""
        for piece in delta.get("tool_calls") or []:
            call = pending.setdefault(piece["index"], {"id": "", "name": "", "arguments": ""})
            fn = piece.get("function") or {}
            call["id"] = piece.get("id") or call["id"]
            call["name"] = fn.get("name") or call["name"]
            call["arguments"] += fn.get("arguments") or ""
        finish = choice.get("finish_reason")
        if finish == "tool_calls":  # the only point where Zed hands the calls on
            read.calls += [pending[i] for i in sorted(pending)]
            pending.clear()
        read.finish = finish or read.finish
    return read


def test_zed_openai_compatible(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    """Zed sends ``temperature: 1.0`` when none is set, a ``prompt_cache_key``, tool results
    as content parts, and the reasoning of an earlier turn as ``reasoning_content``."""
    reply(ollama)
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a highly skilled software engineer."},
            {"role": "user", "content": "Weather in Paris, then Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [EARLIER_CALL],
                "reasoning_content": EARLIER_REASONING,
            },
            {
                "role": "tool",
                "content": [{"type": "text", "text": "Sunny"}, {"type": "text", "text": "21°C"}],
                "tool_call_id": "call_old1",
            },
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 8192,
        "temperature": 1.0,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": WEATHER_PARAMETERS,
                },
            }
        ],
        "prompt_cache_key": "thread-1",
    }
    read = zed_read(post_stream(make_shim(), body))
    check_read(read)
    history = sent_history(ollama)
    assert history[2]["thinking"] == EARLIER_REASONING
    assert history[3] == {
        "role": "tool",
        "content": "Sunny\n21°C",
        "tool_name": "get_weather",
        "tool_call_id": "call_old1",
    }


def test_zed_reads_a_failure_mid_stream(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    """A failure after the stream started is the ``{"error": {"message": ...}}`` event Zed
    turns into an error (and Copilot into a server error), never a cut."""
    ollama.queue(Reply(content="one two three", error_after=2, error="model crashed"))
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    lines = post_stream(make_shim(), body)
    events = [zed_event(line[len("data: ") :]) for line in lines if line != "data: [DONE]"]
    assert "model crashed" in events[-1]["error"]["message"]
    assert "choices" not in events[-1]


@pytest.mark.parametrize("reader", [copilot_read, ai_sdk_read, roo_read, zed_read])
def test_plain_answer_with_thinking(
    make_shim: ShimFactory, ollama: FakeOllama, reader: Any
) -> None:
    """Every client finds the reasoning and the text of a plain streamed answer."""
    ollama.queue(Reply(thinking=THINKING, content=TEXT))
    body = {
        "model": MODEL,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Hi"}],
    }
    read = reader(post_stream(make_shim(), body))
    assert read.reasoning == THINKING
    assert read.text == TEXT
    assert read.finish == "stop"
    assert read.usage is not None
