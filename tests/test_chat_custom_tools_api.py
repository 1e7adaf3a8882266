"""Custom tools (free-form input) in chat completions, whole and streamed."""

from __future__ import annotations

import json
from typing import Any

import openai
import orjson
from openai.types.chat import ChatCompletion

from .fake_ollama import FakeOllama, Reply
from .samples import WEATHER_TOOL
from .test_client_requests import post

PATCH = "*** Begin Patch\n*** End Patch"
PATCH_TOOL: Any = {
    "type": "custom",
    "custom": {
        "name": "apply_patch",
        "description": "Edit files with a patch.",
        "format": {
            "type": "grammar",
            "grammar": {"syntax": "lark", "definition": 'start: "*** Begin Patch"'},
        },
    },
}
USER = [{"role": "user", "content": "Fix it"}]


def stream_calls(raw: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """The tool-call entries of a chat stream, and its finish_reason."""
    entries, reason = [], None
    for block in raw.decode().split("\n\n"):
        if not block.startswith("data: {"):
            continue
        chunk = orjson.loads(block[len("data: ") :])
        for choice in chunk["choices"]:
            entries += choice["delta"].get("tool_calls") or []
            reason = choice["finish_reason"] or reason
    return entries, reason


def test_a_custom_tool_call_whole(client: openai.OpenAI, ollama: FakeOllama) -> None:
    call = {"function": {"name": "apply_patch", "arguments": {"input": PATCH}}}
    ollama.queue(Reply(content="", tool_calls=[call]))
    raw = client.chat.completions.with_raw_response.create(
        model="llama3.2", messages=USER, tools=[PATCH_TOOL, WEATHER_TOOL]
    )
    out = ChatCompletion.model_validate(json.loads(raw.text))
    [made] = out.choices[0].message.tool_calls or []
    assert made.type == "custom"
    assert (made.custom.name, made.custom.input) == ("apply_patch", PATCH)
    assert out.choices[0].finish_reason == "tool_calls"
    tools = ollama.last().body["tools"]
    assert tools[0]["function"]["parameters"]["required"] == ["input"]
    assert 'start: "*** Begin Patch"' in tools[0]["function"]["description"]


def test_a_custom_tool_call_streamed(base_url: str, ollama: FakeOllama) -> None:
    call = {"function": {"name": "apply_patch", "arguments": {"input": PATCH}}}
    ollama.queue(Reply(content="", tool_calls=[call]))
    body = {"model": "llama3.2", "messages": USER, "tools": [PATCH_TOOL], "stream": True}
    status, _, raw = post(f"{base_url}/chat/completions", body)
    assert status == 200
    [entry], reason = stream_calls(raw)
    assert reason == "tool_calls"
    assert entry["type"] == "custom"
    assert entry["custom"] == {"name": "apply_patch", "input": PATCH}
    assert entry["id"].startswith("call_")


def test_a_custom_tool_call_in_the_history(client: openai.OpenAI, ollama: FakeOllama) -> None:
    messages: Any = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "custom", "custom": {"name": "apply_patch", "input": PATCH}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Done!"},
    ]
    client.chat.completions.create(model="llama3.2", messages=messages, tools=[PATCH_TOOL])
    sent = ollama.last().body["messages"]
    assert sent[1]["tool_calls"] == [
        {"function": {"name": "apply_patch", "arguments": {"input": PATCH}}, "id": "c1"}
    ]
    assert sent[2]["tool_name"] == "apply_patch"


def test_forcing_a_custom_tool_agrees_streamed_or_not(base_url: str, ollama: FakeOllama) -> None:
    for choice, answer in [
        ({"type": "custom", "custom": {"name": "apply_patch"}}, {"input": PATCH}),
        ("required", {"name": "apply_patch", "arguments": {"input": PATCH}}),
    ]:
        body: dict[str, Any] = {
            "model": "llama3.2",
            "messages": USER,
            "tools": [PATCH_TOOL, WEATHER_TOOL],
            "tool_choice": choice,
            "parallel_tool_calls": False,
        }
        ollama.queue(Reply(content=orjson.dumps(answer).decode()))
        status, _, raw = post(f"{base_url}/chat/completions", body)
        assert status == 200
        [whole] = (
            ChatCompletion.model_validate(orjson.loads(raw)).choices[0].message.tool_calls or []
        )
        assert whole.type == "custom"
        assert whole.custom.input == PATCH
        ollama.queue(Reply(content=orjson.dumps(answer).decode()))
        status, _, raw = post(f"{base_url}/chat/completions", body | {"stream": True})
        [entry], reason = stream_calls(raw)
        assert reason == "tool_calls"
        assert entry["custom"] == {"name": "apply_patch", "input": PATCH}
