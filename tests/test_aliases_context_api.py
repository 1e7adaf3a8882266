"""Aliases, per-model defaults, num_ctx "auto" and the truncation warning, end to end."""

from __future__ import annotations

import openai
import pytest

from oai2ollama.policy import ModelPolicy, Profile

from .conftest import ShimFactory
from .fake_ollama import FakeOllama, Reply

MESSAGES = [{"role": "user", "content": "hello"}]
POLICY = ModelPolicy(
    defaults=Profile(keep_alive="30m", options={"top_k": 30}),
    models=(("qwen3*", Profile(num_ctx="auto")), ("llama3.2", Profile(num_ctx=4096))),
    aliases=(
        ("gpt-4o", "qwen3:8b"),
        ("gpt-3.5-turbo*", "llama3.2"),
        ("text-embedding-3-small", "nomic-embed-text"),
        ("gpt-5", "not-pulled"),
    ),
    default_model="llama3.2",
    max_num_ctx=16384,
)


@pytest.fixture
def aliased(make_shim: ShimFactory, ollama: FakeOllama) -> openai.OpenAI:
    return openai.OpenAI(base_url=make_shim(policy=POLICY), api_key="x", max_retries=0)


def test_alias_answers_with_the_local_model_and_echoes_the_name(
    aliased: openai.OpenAI, ollama: FakeOllama
) -> None:
    out = aliased.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert out.model == "gpt-4o"
    sent = ollama.last().body
    assert sent["model"] == "qwen3:8b"
    # qwen3* runs with num_ctx "auto": the trained 131072 capped at 16384, plus the defaults.
    assert sent["options"] == {"top_k": 30, "num_ctx": 16384}
    assert sent["keep_alive"] == "30m"
    stream = aliased.chat.completions.create(
        model="gpt-3.5-turbo-0125", messages=MESSAGES, stream=True
    )
    chunks = list(stream)
    assert {c.model for c in chunks} == {"gpt-3.5-turbo-0125"}
    assert ollama.last().body["model"] == "llama3.2"
    assert ollama.last().body["options"]["num_ctx"] == 4096


def test_show_is_asked_once_per_model(aliased: openai.OpenAI, ollama: FakeOllama) -> None:
    for _ in range(3):
        aliased.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    shows = [r for r in ollama.requests if r.path == "/api/show"]
    assert len(shows) <= 1  # cached (it may already be warm from an earlier test)


def test_unknown_names_go_to_the_default_model(aliased: openai.OpenAI, ollama: FakeOllama) -> None:
    out = aliased.chat.completions.create(model="claude-3-opus", messages=MESSAGES)
    assert out.model == "claude-3-opus"
    assert ollama.last().body["model"] == "llama3.2"
    aliased.chat.completions.create(model="llava:7b", messages=MESSAGES)
    assert ollama.last().body["model"] == "llava:7b"


def test_an_alias_to_a_missing_model_is_404_naming_it(aliased: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        aliased.chat.completions.create(model="gpt-5", messages=MESSAGES)
    assert "not-pulled" in info.value.message


def test_client_values_win_over_defaults(aliased: openai.OpenAI, ollama: FakeOllama) -> None:
    aliased.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, extra_body={"num_ctx": 2048, "keep_alive": 0}
    )
    sent = ollama.last().body
    assert sent["options"]["num_ctx"] == 2048
    assert sent["keep_alive"] == 0


def test_locked_config_ignores_client_runner_options(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    locked = ModelPolicy(defaults=Profile(num_ctx=8192, keep_alive=-1), client_overrides=False)
    client = openai.OpenAI(base_url=make_shim(policy=locked), api_key="x", max_retries=0)
    client.chat.completions.create(
        model="llama3.2",
        messages=MESSAGES,
        temperature=0.5,
        extra_body={"num_ctx": 999999, "keep_alive": 0, "options": {"num_gpu": 0}},
    )
    sent = ollama.last().body
    assert sent["options"] == {"temperature": 0.5, "num_ctx": 8192}
    assert sent["keep_alive"] == -1


def test_aliases_in_the_model_list_and_retrieve(aliased: openai.OpenAI) -> None:
    listed = {m.id: m for m in aliased.models.list().data}
    assert (listed["gpt-4o"].model_extra or {})["alias_for"] == "qwen3:8b"
    assert "gpt-5" not in listed  # its target is not pulled
    assert "gpt-3.5-turbo*" not in listed  # patterns are not model names
    one = aliased.models.retrieve("gpt-4o")
    assert one.id == "gpt-4o"
    extra = one.model_extra or {}
    assert extra["alias_for"] == "qwen3:8b"
    assert extra["context_length"] == 131072
    assert "thinking" in extra["capabilities"]
    fallback = aliased.models.retrieve("anything-else").model_extra or {}
    assert fallback["alias_for"] == "llama3.2"


def test_embedding_alias(aliased: openai.OpenAI, ollama: FakeOllama) -> None:
    out = aliased.embeddings.create(model="text-embedding-3-small", input="hi")
    assert out.model == "text-embedding-3-small"
    assert ollama.last("/api/embed").body["model"] == "nomic-embed-text"
    assert ollama.last("/api/embed").body["keep_alive"] == "30m"


def test_a_prompt_longer_than_num_ctx_gets_a_warning_header(
    aliased: openai.OpenAI, ollama: FakeOllama
) -> None:
    long = [{"role": "user", "content": "word " * 6000}]  # 30000 characters, num_ctx 4096
    raw = aliased.chat.completions.with_raw_response.create(model="llama3.2", messages=long)
    warning = raw.headers.get("x-oai2ollama-warning", "")
    assert warning.startswith("prompt-truncated")
    assert "num_ctx=4096" in warning
    raw = aliased.chat.completions.with_raw_response.create(model="llama3.2", messages=MESSAGES)
    assert "x-oai2ollama-warning" not in raw.headers
    streamed = aliased.chat.completions.with_raw_response.create(
        model="llama3.2", messages=long, stream=True
    )
    assert streamed.headers["x-oai2ollama-warning"].startswith("prompt-truncated")


def test_length_finish_reason_is_reported(aliased: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(done_reason="length"))
    out = aliased.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert out.choices[0].finish_reason == "length"


def test_a_prompt_that_filled_the_context_gets_a_warning_header(
    aliased: openai.OpenAI, ollama: FakeOllama
) -> None:
    # Short in characters (no warning before sending), but Ollama evaluated 4090 of 4096 tokens.
    ollama.queue(Reply(prompt_eval_count=4090), Reply(prompt_eval_count=300))
    raw = aliased.chat.completions.with_raw_response.create(model="llama3.2", messages=MESSAGES)
    warning = raw.headers.get("x-oai2ollama-warning", "")
    assert warning.startswith("context-full")
    assert "prompt_tokens=4090" in warning
    raw = aliased.chat.completions.with_raw_response.create(model="llama3.2", messages=MESSAGES)
    assert "x-oai2ollama-warning" not in raw.headers
