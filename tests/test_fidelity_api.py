"""Full chat fidelity end to end with the ``openai`` client: forced tools, n > 1, legacy functions,
reasoning, and images by URL."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import socket
from typing import Any

import openai
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from oai2ollama.config import Settings
from oai2ollama.images import ImageFetcher
from oai2ollama.translate.chat import RemoteImage

from .conftest import ShimFactory
from .fake_ollama import PNG, FakeOllama, Reply
from .samples import WEATHER_TOOL

MESSAGES = [{"role": "user", "content": "What's the weather in Paris?"}]
WEATHER: Any = WEATHER_TOOL
TIME: Any = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


# ---- forced tool calls ---------------------------------------------------------------------


def test_named_tool_choice(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content='{"city": "Paris"}'))
    out = client.chat.completions.create(
        model="llama3.2",
        messages=MESSAGES,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    sent = ollama.last().body
    assert sent["format"] == WEATHER["function"]["parameters"]
    assert "tools" not in sent
    calls = out.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert out.choices[0].finish_reason == "tool_calls"


def test_named_tool_choice_streamed_with_the_sdk_helper(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    ollama.queue(Reply(content='{"city": "Paris", "unit": "celsius"}'))
    with client.chat.completions.stream(
        model="llama3.2",
        messages=MESSAGES,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    ) as stream:
        fragments = [
            event
            for event in stream
            if event.type == "tool_calls.function.arguments.delta"  # type: ignore[comparison-overlap]
        ]
        final = stream.get_final_completion()
    assert len(fragments) > 1  # the arguments really arrive piece by piece
    [made] = final.choices[0].message.tool_calls or []
    assert json.loads(made.function.arguments) == {"city": "Paris", "unit": "celsius"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_required_tool_choice(client: openai.OpenAI, ollama: FakeOllama) -> None:
    text = json.dumps(
        {
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Paris"}},
                {"name": "get_time", "arguments": {}},
            ]
        }
    )
    ollama.queue(Reply(content=text), Reply(content=text))
    out = client.chat.completions.create(
        model="llama3.2", messages=MESSAGES, tools=[WEATHER, TIME], tool_choice="required"
    )
    names = [c.function.name for c in out.choices[0].message.tool_calls or []]
    assert names == ["get_weather", "get_time"]
    stream = client.chat.completions.create(
        model="llama3.2",
        messages=MESSAGES,
        tools=[WEATHER, TIME],
        tool_choice="required",
        stream=True,
    )
    streamed = [
        tc.function.name
        for chunk in stream
        for tc in (chunk.choices[0].delta.tool_calls or [])
        if tc.function and tc.function.name
    ]
    assert streamed == ["get_weather", "get_time"]


def test_tool_choice_none_sends_no_tools(client: openai.OpenAI, ollama: FakeOllama) -> None:
    client.chat.completions.create(
        model="llama3.2", messages=MESSAGES, tools=[WEATHER], tool_choice="none"
    )
    assert "tools" not in ollama.last().body


def test_parallel_tool_calls_false(client: openai.OpenAI, ollama: FakeOllama) -> None:
    calls = [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
    ]
    ollama.queue(Reply(content="", tool_calls=calls), Reply(content="", tool_calls=calls))
    out = client.chat.completions.create(
        model="llama3.2", messages=MESSAGES, tools=[WEATHER], parallel_tool_calls=False
    )
    assert len(out.choices[0].message.tool_calls or []) == 1
    with client.chat.completions.stream(
        model="llama3.2", messages=MESSAGES, tools=[WEATHER], parallel_tool_calls=False
    ) as stream:
        final = stream.get_final_completion()
    assert len(final.choices[0].message.tool_calls or []) == 1


def test_legacy_functions(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(
        Reply(
            content="",
            tool_calls=[{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        )
    )
    out = client.chat.completions.create(
        model="llama3.2", messages=MESSAGES, functions=[WEATHER["function"]]
    )
    message = out.choices[0].message
    assert out.choices[0].finish_reason == "function_call"
    assert message.function_call is not None
    assert message.function_call.name == "get_weather"
    assert json.loads(message.function_call.arguments) == {"city": "Oslo"}


# ---- n > 1 ---------------------------------------------------------------------------------


def test_n_choices_non_stream(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(
        Reply(content="one", eval_count=1),
        Reply(content="two", eval_count=2),
        Reply(content="three", eval_count=3),
    )
    out = client.chat.completions.create(model="llama3.2", messages=MESSAGES, n=3, seed=10)
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert sorted(c.message.content or "" for c in out.choices) == ["one", "three", "two"]
    seeds = sorted(r.body["options"]["seed"] for r in ollama.requests if r.path == "/api/chat")
    assert seeds == [10, 11, 12]
    assert out.usage is not None
    assert out.usage.completion_tokens == 6
    assert out.usage.prompt_tokens == 12


def test_n_choices_stream_interleaved_by_index(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(
        Reply(content="alpha beta gamma", chunk_delay=0.01, eval_count=3),
        Reply(content="one two three", chunk_delay=0.01, eval_count=3),
        Reply(content="x y z", chunk_delay=0.01, eval_count=3),
    )
    stream = client.chat.completions.create(
        model="llama3.2",
        messages=MESSAGES,
        n=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts: dict[int, str] = {0: "", 1: "", 2: ""}
    roles: dict[int, int] = {0: 0, 1: 0, 2: 0}
    finished: list[int] = []
    usage = None
    order: list[int] = []
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            order.append(c.index)
            texts[c.index] += c.delta.content or ""
            roles[c.index] += c.delta.role == "assistant"
            if c.finish_reason:
                finished.append(c.index)
    assert sorted(texts.values()) == sorted(["alpha beta gamma", "one two three", "x y z"])
    assert roles == {0: 1, 1: 1, 2: 1}
    assert sorted(finished) == [0, 1, 2]
    assert order != sorted(order)  # really interleaved, not one after the other
    assert usage is not None
    assert usage.completion_tokens == 9


def test_n_with_an_unknown_model_is_still_a_404(client: openai.OpenAI) -> None:
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope", messages=MESSAGES, n=2, stream=stream)


def test_n_stream_failure_in_one_choice_ends_the_stream_with_an_error(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    ollama.queue(
        Reply(content="a b c d e f", chunk_delay=0.02),
        Reply(content="a b c d e f", error_after=2, error="runner died"),
    )
    stream = client.chat.completions.create(model="llama3.2", messages=MESSAGES, n=2, stream=True)
    with pytest.raises(openai.APIError, match="runner died"):
        for _ in stream:
            pass


def test_n_over_the_cap(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="llama3.2", messages=MESSAGES, n=9)
    assert info.value.param == "n"  # type: ignore[attr-defined]


# ---- reasoning -----------------------------------------------------------------------------


def test_reasoning_none_turns_thinking_off_and_history_goes_back_as_thinking(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    client.chat.completions.create(
        model="qwen3:8b",
        reasoning_effort="none",
        messages=[
            *MESSAGES,
            {"role": "assistant", "content": "Sunny.", "reasoning_content": "Checked."},  # type: ignore[typeddict-unknown-key]
            {"role": "user", "content": "And tomorrow?"},
        ],
    )
    sent = ollama.last().body
    assert sent["think"] is False
    assert sent["messages"][1]["thinking"] == "Checked."


def test_think_extra_is_passed(client: openai.OpenAI, ollama: FakeOllama) -> None:
    client.chat.completions.create(model="qwen3:8b", messages=MESSAGES, extra_body={"think": "low"})
    assert ollama.last().body["think"] == "low"


# ---- images by URL -------------------------------------------------------------------------


def image_message(url: str) -> list[Any]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in the picture?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


def test_image_urls_are_refused_unless_enabled(client: openai.OpenAI, image_server: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="llava:7b", messages=image_message(f"{image_server}/cat.png")
        )
    assert info.value.code == "image_url_not_allowed"
    assert info.value.param == "messages[0].content[1].image_url.url"  # type: ignore[attr-defined]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_enabled_image_urls_never_reach_private_addresses(
    make_shim: ShimFactory, ollama: FakeOllama, image_server: str, host: str
) -> None:
    client = openai.OpenAI(base_url=make_shim(allow_image_urls=True), api_key="x", max_retries=0)
    url = image_server.replace("127.0.0.1", host) + "/cat.png"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="llava:7b", messages=image_message(url))
    assert info.value.code == "image_url_blocked"
    # At most the model's capabilities were asked for (to know it can see); nothing generated.
    assert {r.path for r in ollama.requests} <= {"/api/show"}


class MapResolver(AbstractResolver):
    """Resolves made-up names to fixed addresses, as DNS would."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.names.get(host)
        if address is None:
            raise OSError(f"unknown host {host}")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


def fetch(url: str, **settings: Any) -> str:
    """Fetch with a policy that treats 127.0.0.1 (only) as a public address."""

    async def run() -> str:
        fetcher = ImageFetcher(
            Settings(**settings),
            allow=lambda ip: ip == ipaddress.ip_address("127.0.0.1"),
            resolver=MapResolver({"images.test": "127.0.0.1", "internal.test": "10.1.2.3"}),
        )
        await fetcher.start()
        try:
            return await fetcher.fetch(RemoteImage(0, 0, url, "messages[0].content[0]"))
        finally:
            await fetcher.close()

    return asyncio.run(run())


def test_fetcher_fetches_by_name_and_address(image_server: str) -> None:
    port = image_server.rsplit(":", 1)[1]
    assert base64.b64decode(fetch(f"{image_server}/cat.png")) == PNG
    assert base64.b64decode(fetch(f"http://images.test:{port}/cat.png")) == PNG


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/big.png", "image_too_large"),
        ("/missing.png", "image_fetch_failed"),
        ("/redirect?to=http://127.0.0.2:{port}/cat.png", "image_url_blocked"),
        ("/redirect?to=http://internal.test:{port}/cat.png", "image_url_blocked"),
        ("/redirect?to=http://images.test:{port}/cat.png", None),
        ("/slow.png", "image_fetch_failed"),
    ],
)
def test_fetcher_limits(image_server: str, path: str, code: str | None) -> None:
    port = image_server.rsplit(":", 1)[1]
    url = image_server + path.format(port=port)
    if code is None:
        assert base64.b64decode(fetch(url)) == PNG
        return
    from oai2ollama.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as info:
        fetch(url, image_max_bytes=1024 * 1024, image_timeout=0.5)
    assert info.value.code == code
    assert info.value.param == "messages[0].content[0]"
