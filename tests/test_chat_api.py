"""Chat completions and models end to end: the real ``openai`` client → shim → test Ollama."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from .fake_ollama import FakeOllama, Reply
from .samples import WEATHER_TOOL

MESSAGES = [{"role": "user", "content": "Say hello"}]


def test_non_stream_answer(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="Hello there, friend.", prompt_eval_count=26, eval_count=5))
    out = client.chat.completions.create(model="llama3.2", messages=MESSAGES)
    assert out.id.startswith("chatcmpl-")
    assert out.object == "chat.completion"
    assert out.model == "llama3.2"
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == "Hello there, friend."
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (
        26,
        5,
        31,
    )
    sent = ollama.last().body
    assert sent == {"model": "llama3.2", "messages": MESSAGES, "stream": False}


def test_ids_are_unique(client: openai.OpenAI) -> None:
    ids = {client.chat.completions.create(model="llama3.2", messages=MESSAGES).id for _ in range(5)}
    assert len(ids) == 5


def test_length_finish_reason(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="Once upon", done_reason="length"))
    out = client.chat.completions.create(model="llama3.2", messages=MESSAGES, max_tokens=2)
    assert out.choices[0].finish_reason == "length"
    assert ollama.last().body["options"] == {"num_predict": 2}


def test_only_client_set_parameters_reach_ollama(client: openai.OpenAI, ollama: FakeOllama) -> None:
    client.chat.completions.create(
        model="llama3.2",
        messages=[{"role": "developer", "content": "Be terse."}, *MESSAGES],
        max_completion_tokens=50,
        temperature=0.3,
        stop=["\n\n"],
        seed=42,
        response_format={"type": "json_object"},
        user="someone",
        extra_body={"num_ctx": 8192, "keep_alive": "1h", "options": {"top_k": 10}},
    )
    sent = ollama.last().body
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."}
    assert sent["options"] == {
        "num_predict": 50,
        "temperature": 0.3,
        "stop": ["\n\n"],
        "seed": 42,
        "num_ctx": 8192,
        "top_k": 10,
    }
    assert sent["format"] == "json"
    assert sent["keep_alive"] == "1h"
    assert sent["stream"] is False
    assert "user" not in sent


def test_credentials_and_client_headers_are_not_forwarded(
    base_url: str, ollama: FakeOllama
) -> None:
    client = openai.OpenAI(
        base_url=base_url,
        api_key="sk-secret-value",
        default_headers={"Cookie": "session=1", "Origin": "https://evil.example"},
        max_retries=0,
    )
    client.chat.completions.create(model="llama3.2", messages=MESSAGES)
    headers = {k.lower(): v for k, v in ollama.last().headers.items()}
    assert "authorization" not in headers
    assert "cookie" not in headers
    assert "origin" not in headers
    assert headers["host"] == ollama.url.removeprefix("http://")
    assert not any(k.startswith("x-stainless") or k.startswith("openai-") for k in headers)
    assert "sk-secret-value" not in json.dumps(ollama.last().body)


def test_stream_answer(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="The sky is blue.", prompt_eval_count=9, eval_count=4))
    chunks = list(
        client.chat.completions.create(
            model="llama3.2",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert ollama.last().body["stream"] is True
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The sky is blue."
    assert len({c.id for c in chunks}) == 1
    assert len({c.created for c in chunks}) == 1
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 13
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_lines_split_across_reads_and_content_on_done(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    ollama.queue(
        Reply(content="Split lines still parse", content_on_done=" fine.", split_writes=True)
    )
    stream = client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text == "Split lines still parse fine."


def test_unicode_survives(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="Grüße 👋 — 你好", split_writes=True))
    stream = client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "Grüße 👋 — 你好"


def test_async_client_stream_and_non_stream(base_url: str, ollama: FakeOllama) -> None:
    async def run() -> tuple[str, str, int]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as client:
            whole = await client.chat.completions.create(model="llama3.2", messages=MESSAGES)
            stream = await client.chat.completions.create(
                model="llama3.2", messages=MESSAGES, stream=True
            )
            parts = [c.choices[0].delta.content or "" async for c in stream]
            many = await asyncio.gather(
                *(
                    client.chat.completions.create(model="llama3.2", messages=MESSAGES)
                    for _ in range(20)
                )
            )
            return whole.choices[0].message.content or "", "".join(parts), len(many)

    whole, streamed, count = asyncio.run(run())
    assert whole == streamed == "Hello! How can I help you today?"
    assert count == 20


def test_tool_calls_non_stream_and_history_round_trip(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    ollama.queue(
        Reply(
            content="",
            tool_calls=[{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        )
    )
    out = client.chat.completions.create(model="llama3.2", messages=MESSAGES, tools=[WEATHER_TOOL])
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    client.chat.completions.create(
        model="llama3.2",
        tools=[WEATHER_TOOL],
        messages=[
            *MESSAGES,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "22°C"},
        ],
    )
    sent = ollama.last().body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert sent[2] == {
        "role": "tool",
        "content": "22°C",
        "tool_name": "get_weather",
        "tool_call_id": call.id,
    }


@pytest.mark.parametrize("on_done", [False, True], ids=["rendered", "llama-server"])
def test_streamed_tool_calls_with_the_sdk_stream_helper(
    client: openai.OpenAI, ollama: FakeOllama, on_done: bool
) -> None:
    ollama.queue(
        Reply(
            content="",
            tool_calls=[
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            ],
            tool_calls_on_done=on_done,
        )
    )
    with client.chat.completions.stream(
        model="llama3.2", messages=MESSAGES, tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Paris", "Oslo"]
    assert len({c.id for c in calls}) == 2


def test_thinking_is_reasoning_content(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(
        Reply(content="42", thinking="Let me think about it"),
        Reply(content="42", thinking="Let me think about it"),
    )
    out = client.chat.completions.create(
        model="qwen3:8b", messages=MESSAGES, reasoning_effort="high"
    )
    assert ollama.last().body["think"] == "high"
    message = out.choices[0].message
    assert message.content == "42"
    assert getattr(message, "reasoning_content", None) == "Let me think about it"
    stream = client.chat.completions.create(model="qwen3:8b", messages=MESSAGES, stream=True)
    reasoning, content = "", ""
    for chunk in stream:
        delta = chunk.choices[0].delta
        reasoning += getattr(delta, "reasoning_content", None) or ""
        content += delta.content or ""
    assert (reasoning, content) == ("Let me think about it", "42")


def test_logprobs(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="Hi there", logprobs=True))
    out = client.chat.completions.create(
        model="llama3.2", messages=MESSAGES, logprobs=True, top_logprobs=1
    )
    assert ollama.last().body["logprobs"] is True
    assert ollama.last().body["top_logprobs"] == 1
    lp = out.choices[0].logprobs
    assert lp is not None
    assert lp.content is not None
    assert [t.token for t in lp.content] == ["Hi", " there"]
    assert lp.content[0].top_logprobs[0].logprob == -0.25


def test_image_data_url_reaches_ollama_as_base64(client: openai.OpenAI, ollama: FakeOllama) -> None:
    client.chat.completions.create(
        model="llava:7b",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                ],
            }
        ],
    )
    assert ollama.last().body["messages"][0]["images"] == ["iVBORw0KGgo="]


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert "llama3.2:latest" in ids
    assert "qwen3:8b" in ids
    first = models.data[0]
    assert first.object == "model"
    assert first.owned_by == "library"
    assert first.created > 1_700_000_000
    assert client.models.retrieve("qwen3:8b").id == "qwen3:8b"
    assert client.models.retrieve("llama3.2").id == "llama3.2"
    slashed = client.models.retrieve("hf.co/bartowski/Qwen2.5-Coder-1.5B-GGUF:Q4_K_M")
    assert slashed.owned_by == "bartowski"


def test_models_list_when_empty(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.models = {}
    assert client.models.list().data == []


def test_routes_without_v1_prefix(base_url: str) -> None:
    bare = openai.OpenAI(base_url=base_url.removesuffix("/v1"), api_key="x", max_retries=0)
    assert bare.chat.completions.create(model="llama3.2", messages=MESSAGES).choices
    assert bare.models.list().data


def test_logprobs_in_a_stream(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="Hi there", logprobs=True))
    stream = client.chat.completions.create(
        model="llama3.2", messages=MESSAGES, logprobs=True, stream=True
    )
    tokens = [
        t.token
        for chunk in stream
        if chunk.choices and chunk.choices[0].logprobs
        for t in chunk.choices[0].logprobs.content or []
    ]
    assert tokens == ["Hi", " there"]


def test_top_logprobs_out_of_range(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="llama3.2", messages=MESSAGES, logprobs=True, top_logprobs=21
        )
    assert info.value.param == "top_logprobs"  # type: ignore[attr-defined]
