"""Embeddings and legacy completions (FIM) end to end with the ``openai`` client."""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest

from .fake_ollama import FakeOllama, Reply, _vector

CODER = "hf.co/bartowski/Qwen2.5-Coder-1.5B-GGUF:Q4_K_M"


# ---- embeddings ----------------------------------------------------------------------------


def test_embeddings_with_the_sdk_defaults(client: openai.OpenAI, ollama: FakeOllama) -> None:
    out = client.embeddings.create(model="nomic-embed-text", input=["hello world", "goodbye"])
    sent = ollama.last("/api/embed").body
    assert sent == {"model": "nomic-embed-text", "input": ["hello world", "goodbye"]}
    assert [d.index for d in out.data] == [0, 1]
    assert len(out.data[0].embedding) == 768
    # The SDK asked for base64 and decoded it: the values survive as float32.
    assert out.data[0].embedding == pytest.approx(_vector("hello world", 768), abs=1e-6)
    assert out.model == "nomic-embed-text"
    assert (out.usage.prompt_tokens, out.usage.total_tokens) == (3, 3)


def test_embeddings_base64_on_the_wire(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
    raw = client.embeddings.with_raw_response.create(
        model="nomic-embed-text", input="hello world", encoding_format="base64"
    )
    vector = raw.http_response.json()["data"][0]["embedding"]
    assert isinstance(vector, str)
    decoded = struct.unpack("<768f", base64.b64decode(vector))
    assert decoded == pytest.approx(_vector("hello world", 768), abs=1e-6)


def test_embeddings_float(client: openai.OpenAI) -> None:
    out = client.embeddings.create(
        model="nomic-embed-text", input="hello world", encoding_format="float"
    )
    assert out.data[0].embedding == pytest.approx(_vector("hello world", 768))


@pytest.mark.parametrize("supported", [True, False], ids=["ollama-does-it", "shim-does-it"])
def test_embedding_dimensions(client: openai.OpenAI, ollama: FakeOllama, supported: bool) -> None:
    ollama.embed_dimensions = supported
    out = client.embeddings.create(model="nomic-embed-text", input="hello world", dimensions=256)
    vector = out.data[0].embedding
    assert len(vector) == 256
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-5)
    assert ollama.last("/api/embed").body["dimensions"] == 256


@pytest.mark.parametrize("value", ["", [], ["a", ""], [[1, 2, 3]], [15339, 1917]])
def test_bad_embedding_input(client: openai.OpenAI, ollama: FakeOllama, value: object) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="nomic-embed-text", input=value)  # type: ignore[arg-type]
    assert info.value.param == "input"  # type: ignore[attr-defined]
    assert ollama.requests == []


def test_embedding_unknown_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert info.value.code == "model_not_found"


# ---- completions / fill-in-the-middle ------------------------------------------------------


def test_fill_in_the_middle(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="a + b"))
    out = client.completions.create(
        model=CODER,
        prompt="def add(a, b):\n    return ",
        suffix="\n\nprint(add(1, 2))",
        max_tokens=16,
    )
    sent = ollama.last("/api/generate").body
    assert sent["prompt"] == "def add(a, b):\n    return "
    assert sent["suffix"] == "\n\nprint(add(1, 2))"
    assert sent["options"] == {"num_predict": 16}
    assert sent["stream"] is False
    assert out.object == "text_completion"
    assert out.id.startswith("cmpl-")
    assert out.choices[0].text == "a + b"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None
    assert out.usage.total_tokens == 19


def test_fill_in_the_middle_streamed(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="total = a + b", split_writes=True))
    stream = client.completions.create(
        model=CODER,
        prompt="def add(a, b):\n    ",
        suffix="\n    return total",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "total = a + b"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert ollama.last("/api/generate").body["stream"] is True


def test_suffix_on_a_model_without_insert_keeps_ollamas_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="llama3.2", prompt="a", suffix="b")
    assert "does not support insert" in info.value.message


def test_prompt_list_and_n(client: openai.OpenAI, ollama: FakeOllama) -> None:
    out = client.completions.create(model="llama3.2", prompt=["one", "two"], n=2)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    prompts = sorted(r.body["prompt"] for r in ollama.requests if r.path == "/api/generate")
    assert prompts == ["one", "one", "two", "two"]


def test_n_streamed_completions(client: openai.OpenAI, ollama: FakeOllama) -> None:
    stream = client.completions.create(model="llama3.2", prompt="x", n=2, stream=True)
    texts = {0: "", 1: ""}
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] += c.text
    assert texts == {0: "Hello! How can I help you today?", 1: "Hello! How can I help you today?"}


def test_echo_and_logprobs(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="is fine", logprobs=True))
    out = client.completions.create(model="llama3.2", prompt="All", echo=True, logprobs=2)
    choice = out.choices[0]
    assert choice.text == "Allis fine"
    assert choice.logprobs is not None
    assert choice.logprobs.tokens == ["is", " fine"]
    assert choice.logprobs.text_offset == [3, 5]
    assert ollama.last("/api/generate").body["top_logprobs"] == 2


def test_raw_mode_passthrough(client: openai.OpenAI, ollama: FakeOllama) -> None:
    client.completions.create(
        model="llama3.2",
        prompt="<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
        extra_body={"raw": True},
    )
    assert ollama.last("/api/generate").body["raw"] is True


def test_token_prompts_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="llama3.2", prompt=[1, 2, 3])
    assert info.value.param == "prompt"  # type: ignore[attr-defined]


def test_completion_mid_stream_error(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="a b c d", error_after=2, error="runner crashed"))
    stream = client.completions.create(model="llama3.2", prompt="x", stream=True)
    with pytest.raises(openai.APIError, match="runner crashed"):
        for _ in stream:
            pass
