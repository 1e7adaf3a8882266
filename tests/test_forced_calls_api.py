"""A forced tool call gets the same verdict, call or text, streamed and not (both APIs)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

from .fake_ollama import FakeOllama, Reply
from .samples import WEATHER_FLAT, WEATHER_TOOL
from .test_client_requests import post, response_events

NAMED_CHAT = {"type": "function", "function": {"name": "get_weather"}}
NAMED_RESPONSES = {"type": "function", "name": "get_weather"}
CALL_JSON = '{"city": "Paris", "unit": "celsius"}'
REQUIRED_JSON = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
NOT_JSON = "I would rather tell you about the weather myself."

# (tool_choice kind, the model's constrained answer, is it a call?)
CASES = [
    ("named", CALL_JSON, True),
    ("named", NOT_JSON, False),
    ("named", "  [1, 2]", False),
    ("required", REQUIRED_JSON, True),
    ("required", NOT_JSON, False),
    ("required", '{"name": "unknown", "arguments": {}}', False),
]


def chat_verdict(client: openai.OpenAI, choice: Any, stream: bool) -> tuple[str, str, int]:
    """(finish_reason, text, number of argument fragments) of one chat answer."""
    kwargs: Any = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": choice,
        "parallel_tool_calls": False,
    }
    if not stream:
        out = client.chat.completions.with_raw_response.create(**kwargs)
        answer = ChatCompletion.model_validate(json.loads(out.text))
        message = answer.choices[0].message
        calls = message.tool_calls or []
        reason = answer.choices[0].finish_reason
        if calls:
            assert message.content is None
            assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
            return reason, calls[0].function.arguments, 1  # type: ignore[union-attr]
        return reason, message.content or "", 0
    text, arguments, fragments, reason = "", "", 0, ""
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        ChatCompletionChunk.model_validate(chunk.model_dump())
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or []:
            assert call.index == 0
            if call.function and call.function.name:
                assert call.function.name == "get_weather"
            fragments += 1
            arguments += (call.function.arguments if call.function else None) or ""
        reason = chunk.choices[0].finish_reason or reason
    if fragments:
        assert not text
        return reason, arguments, fragments
    return reason, text, 0


@pytest.mark.parametrize(("kind", "answer", "is_call"), CASES)
def test_chat_stream_and_non_stream_agree(
    client: openai.OpenAI, ollama: FakeOllama, kind: str, answer: str, is_call: bool
) -> None:
    choice = NAMED_CHAT if kind == "named" else "required"
    ollama.queue(Reply(content=answer), Reply(content=answer))
    whole = chat_verdict(client, choice, stream=False)
    streamed = chat_verdict(client, choice, stream=True)
    assert whole[0] == streamed[0] == ("tool_calls" if is_call else "stop")
    if is_call:
        assert json.loads(whole[1]) == json.loads(streamed[1])
    else:
        assert whole[1] == streamed[1] == answer


def test_a_named_call_streams_its_arguments_as_they_come(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    ollama.queue(Reply(content=CALL_JSON))
    reason, arguments, fragments = chat_verdict(client, NAMED_CHAT, stream=True)
    assert reason == "tool_calls"
    assert arguments == CALL_JSON
    assert fragments == len(CALL_JSON.split(" "))  # one per chunk Ollama sent, none held back


def test_a_cut_named_call_is_a_cut_call_both_ways(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    cut = '{"city": "Pa'
    ollama.queue(Reply(content=cut, done_reason="length"), Reply(content=cut, done_reason="length"))
    assert chat_verdict(client, NAMED_CHAT, stream=False) == ("length", cut, 1)
    assert chat_verdict(client, NAMED_CHAT, stream=True)[:2] == ("length", cut)


def test_an_answer_that_ends_in_its_opening_is_text_both_ways(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    ollama.queue(
        Reply(content=" {", done_reason="length"), Reply(content=" {", done_reason="length")
    )
    assert chat_verdict(client, NAMED_CHAT, stream=False) == ("length", " {", 0)
    assert chat_verdict(client, NAMED_CHAT, stream=True) == ("length", " {", 0)


def responses_verdict(url: str, choice: Any, stream: bool) -> tuple[str, str, int]:
    """(output item type, its text or arguments, argument delta events) of one response."""
    body = {
        "model": "llama3.2",
        "input": "Weather in Paris?",
        "tools": [WEATHER_FLAT],
        "tool_choice": choice,
        "parallel_tool_calls": False,
        "stream": stream,
    }
    status, _, raw = post(f"{url}/responses", body)
    assert status == 200, raw
    deltas = 0
    if stream:
        events = response_events(raw)
        assert events[-1]["type"] == "response.completed"
        deltas = sum(e["type"] == "response.function_call_arguments.delta" for e in events)
        data = events[-1]["response"]
    else:
        data = json.loads(raw)
    [item] = Response.model_validate(data).output
    if item.type == "function_call":
        assert item.name == "get_weather"
        return item.type, item.arguments, deltas
    assert item.type == "message"
    return item.type, item.content[0].text, deltas  # type: ignore[union-attr]


@pytest.mark.parametrize(("kind", "answer", "is_call"), CASES)
def test_responses_stream_and_non_stream_agree(
    base_url: str, ollama: FakeOllama, kind: str, answer: str, is_call: bool
) -> None:
    choice = NAMED_RESPONSES if kind == "named" else "required"
    ollama.queue(Reply(content=answer), Reply(content=answer))
    whole = responses_verdict(base_url, choice, stream=False)
    streamed = responses_verdict(base_url, choice, stream=True)
    assert whole[0] == streamed[0] == ("function_call" if is_call else "message")
    if is_call:
        assert json.loads(whole[1]) == json.loads(streamed[1])
    else:
        assert whole[1] == streamed[1] == answer
    if kind == "named" and is_call:
        assert streamed[2] == len(answer.split(" "))  # every chunk as it came
    if kind == "required" and is_call:
        assert streamed[2] == 2  # the two chunks that carry the arguments


def test_a_required_call_streams_once_its_name_is_read(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    ollama.queue(Reply(content=REQUIRED_JSON))
    reason, arguments, fragments = chat_verdict(client, "required", stream=True)
    assert reason == "tool_calls"
    assert arguments == '{"city": "Paris"}'
    # Held back: '{"name": "get_weather",'; then each chunk's part of the arguments.
    assert fragments == 3


def test_several_required_calls_agree_and_stream(client: openai.OpenAI, ollama: FakeOllama) -> None:
    answer = json.dumps(
        {
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Paris"}},
                {"name": "nowhere", "arguments": {}},
                {"name": "get_weather", "arguments": {"city": "Rome"}},
            ]
        }
    )
    kwargs: Any = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "Paris and Rome?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
    }
    ollama.queue(Reply(content=answer), Reply(content=answer))
    whole = client.chat.completions.create(**kwargs)
    calls = whole.choices[0].message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        {"city": "Paris"},
        {"city": "Rome"},
    ]
    assert whole.choices[0].finish_reason == "tool_calls"
    streamed: dict[int, str] = {}
    reason = None
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for call in chunk.choices[0].delta.tool_calls or []:
            streamed[call.index] = streamed.get(call.index, "") + (
                (call.function.arguments if call.function else None) or ""
            )
        reason = chunk.choices[0].finish_reason or reason
    assert reason == "tool_calls"
    assert [json.loads(streamed[i]) for i in sorted(streamed)] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]
