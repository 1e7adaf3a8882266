"""The Responses API end to end with the ``openai`` client, and its rules on plain dicts."""

from __future__ import annotations

import json
from typing import Any

import openai
import orjson
import pytest

from oai2ollama.errors import InvalidRequest
from oai2ollama.translate import responses

from .conftest import ShimFactory
from .fake_ollama import FakeOllama, Reply
from .samples import WEATHER_FLAT

TOOLS: Any = [WEATHER_FLAT]
WEATHER_CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


def test_text(client: openai.OpenAI, ollama: FakeOllama) -> None:
    out = client.responses.create(
        model="llama3.2", input="Hello", instructions="Be brief.", max_output_tokens=50
    )
    assert out.id.startswith("resp_")
    assert out.object == "response"
    assert out.status == "completed"
    assert out.model == "llama3.2"
    assert out.output_text == "Hello! How can I help you today?"
    assert out.usage is not None
    assert (out.usage.input_tokens, out.usage.output_tokens, out.usage.total_tokens) == (12, 7, 19)
    sent = ollama.last().body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    assert sent["options"] == {"num_predict": 50}
    assert sent["stream"] is False


def test_length_limit_is_incomplete(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="Once upon", done_reason="length"))
    out = client.responses.create(model="llama3.2", input="Story", max_output_tokens=2)
    assert out.status == "incomplete"
    assert out.incomplete_details is not None
    assert out.incomplete_details.reason == "max_output_tokens"


def test_stream_events_in_order(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="The answer is 42", thinking="Let me think"))
    with client.responses.stream(
        model="qwen3:8b", input="Question?", reasoning={"effort": "high"}
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert ollama.last().body["think"] == "high"
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.reasoning_summary_text.delta" in kinds
    message_start = kinds.index("response.content_part.added")
    assert kinds.index("response.reasoning_summary_text.done") < message_start
    assert kinds.index("response.output_text.done") < kinds.index("response.content_part.done")
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))
    texts = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert texts == "The answer is 42"
    assert final.output_text == "The answer is 42"
    assert [o.type for o in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == "Let me think"  # type: ignore[union-attr]


def test_function_call_round_trip_with_the_store(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="", tool_calls=[WEATHER_CALL]))
    first = client.responses.create(model="llama3.2", input="Weather in Paris?", tools=TOOLS)
    [call] = first.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert ollama.last().body["tools"][0]["function"]["name"] == "get_weather"
    second = client.responses.create(
        model="llama3.2",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22°C"}],
        tools=TOOLS,
    )
    assert second.previous_response_id == first.id
    sent = ollama.last().body["messages"]
    assert sent[0] == {"role": "user", "content": "Weather in Paris?"}
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert sent[2] == {
        "role": "tool",
        "content": "22°C",
        "tool_name": "get_weather",
        "tool_call_id": call.call_id,
    }
    assert client.responses.retrieve(second.id).output_text == second.output_text
    assert client.responses.delete(first.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_stateless_round_trip_with_full_input(client: openai.OpenAI, ollama: FakeOllama) -> None:
    client.responses.create(
        model="qwen3:8b",
        store=False,
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "Use the tool."}],
            },
            {
                "type": "function_call",
                "call_id": "call_9",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_9", "output": "cold"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "It is cold."}]},
            {"role": "user", "content": "Thanks"},
        ],
        tools=TOOLS,
    )
    sent = ollama.last().body["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": "",
        "thinking": "Use the tool.",
        "tool_calls": [
            {"id": "call_9", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
        ],
    }
    assert sent[2]["tool_name"] == "get_weather"
    assert sent[3] == {"role": "assistant", "content": "It is cold."}


def test_streamed_function_call(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="", tool_calls=[WEATHER_CALL]))
    with client.responses.stream(model="llama3.2", input="Weather?", tools=TOOLS) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    [call] = final.output
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"city": "Paris"}


def test_forced_tool_choice(client: openai.OpenAI, ollama: FakeOllama) -> None:
    required = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}'
    ollama.queue(Reply(content='{"city": "Rome"}'), Reply(content=required))
    out = client.responses.create(
        model="llama3.2",
        input="Weather in Rome?",
        tools=TOOLS,
        tool_choice={"type": "function", "name": "get_weather"},
    )
    assert ollama.last().body["format"] == TOOLS[0]["parameters"]
    [call] = out.output
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"city": "Rome"}
    with client.responses.stream(
        model="llama3.2", input="Rome?", tools=TOOLS, tool_choice="required"
    ) as stream:
        list(stream)
        final = stream.get_final_response()
    assert final.output[0].type == "function_call"
    assert json.loads(final.output[0].arguments) == {"city": "Rome"}


def test_structured_output(client: openai.OpenAI, ollama: FakeOllama) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    ollama.queue(Reply(content='{"name": "Ada"}'))
    out = client.responses.create(
        model="llama3.2",
        input="Name someone.",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema}},
    )
    assert ollama.last().body["format"] == schema
    assert json.loads(out.output_text) == {"name": "Ada"}
    client.responses.create(model="llama3.2", input="x", text={"format": {"type": "json_object"}})
    assert ollama.last().body["format"] == "json"


def test_image_input(client: openai.OpenAI, ollama: FakeOllama) -> None:
    client.responses.create(
        model="llava:7b",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
                ],
            }
        ],
    )
    assert ollama.last().body["messages"][0]["images"] == ["iVBORw0KGgo="]


def test_a_failure_mid_stream_is_response_failed(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="a b c d", error_after=2, error="runner crashed"))
    with client.responses.stream(model="llama3.2", input="x") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError):
            stream.get_final_response()
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed"
    assert last.response.error is not None
    assert "runner crashed" in last.response.error.message


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        (
            {"input": "x", "tools": [{"type": "web_search"}], "tool_choice": {"type": "mcp"}},
            "tool_choice",
        ),
        ({"input": "x", "tools": [{"type": "namespace", "tools": []}]}, "tools[0].name"),
        ({"input": "x", "tools": [{"type": "custom", "name": 5}]}, "tools[0].name"),
        ({"input": "x", "background": True}, "background"),
        ({"input": "x", "previous_response_id": "resp_missing"}, "previous_response_id"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"input": 5}, "input"),
    ],
)
def test_bad_requests(client: openai.OpenAI, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="llama3.2", **kwargs)
    assert info.value.param == param  # type: ignore[attr-defined]


def test_unknown_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-5", input="x")
    with (
        pytest.raises(openai.NotFoundError),
        client.responses.stream(model="gpt-5", input="x") as stream,
    ):
        list(stream)


def test_stateless_server_says_so(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    client = openai.OpenAI(base_url=make_shim(responses_store=0), api_key="x", max_retries=0)
    assert client.responses.create(model="llama3.2", input="x", store=False).output_text
    assert client.responses.create(model="llama3.2", input="x").store is False
    for kwargs in ({"store": True}, {"previous_response_id": "resp_1"}):
        with pytest.raises(openai.BadRequestError, match="keeps no responses"):
            client.responses.create(model="llama3.2", input="x", **kwargs)  # type: ignore[arg-type]


# ---- rules on plain values -----------------------------------------------------------------


def test_param_names_are_the_responses_ones() -> None:
    assert responses.rename_param("max_completion_tokens") == "max_output_tokens"
    assert responses.rename_param("tools[0].function.name") == "tools[0].name"
    assert responses.rename_param("response_format.json_schema.schema") == (
        "text.format.json_schema.schema"
    )
    with pytest.raises(InvalidRequest) as info:
        responses.parse_request({"model": "m", "input": "x", "temperature": "hot"})
    assert info.value.param == "temperature"


def test_stream_translation_on_dicts() -> None:
    req = responses.parse_request({"model": "m", "input": "x", "stream": True})
    stream = responses.ResponsesStream(req, "resp_1", 0)
    data = stream.start() + stream.feed(
        {"message": {"role": "assistant", "content": "Hi"}, "done": False}
    )
    data += stream.feed({"message": {"role": "assistant", "content": ""}, "done": True})
    blocks = [b for b in data.split(b"\n\n") if b]
    names = [b.split(b"\n")[0].removeprefix(b"event: ").decode() for b in blocks]
    payloads = [orjson.loads(b.split(b"\n")[1].removeprefix(b"data: ")) for b in blocks]
    assert names == [p["type"] for p in payloads]
    assert names[-1] == "response.completed"
    assert payloads[-1]["response"]["output"][0]["content"][0]["text"] == "Hi"
    assert stream.done
