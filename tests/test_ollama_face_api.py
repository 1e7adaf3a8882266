"""Ollama's own API at the root, driven by the official ``ollama`` client and raw HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import ollama as ollama_sdk
import orjson
import pytest

from oai2ollama.config import Settings
from oai2ollama.policy import ModelPolicy, Profile
from oai2ollama.server import bound_port, start
from oai2ollama.translate.native import TRAINED_CONTEXT_KEY

from .conftest import ShimFactory
from .fake_ollama import FakeOllama, LoopThread, Reply
from .samples import WEATHER_TOOL

HELLO = [{"role": "user", "content": "hello"}]
POLICY = ModelPolicy(
    defaults=Profile(keep_alive="30m"),
    models=(("llama3.2", Profile(num_ctx=8192)), ("qwen3*", Profile(num_ctx="auto"))),
    aliases=(
        ("copilot-chat", "llama3.2:latest"),
        ("embedder", "nomic-embed-text"),
        ("gpt-4*", "qwen3:8b"),
        ("ghost", "not-pulled"),
    ),
    max_num_ctx=16384,
)


def root(make_shim: ShimFactory, **settings: Any) -> str:
    return make_shim(**settings).removesuffix("/v1")


@pytest.fixture(autouse=True)
def _leave_ollama_as_found(ollama: FakeOllama) -> Iterator[None]:
    """Models pulled, created or deleted here, and the version, must not be seen later."""
    yield
    ollama.reset()
    ollama.version = FakeOllama().version


@pytest.fixture
def url(make_shim: ShimFactory, ollama: FakeOllama) -> str:
    return root(make_shim, policy=POLICY)


@pytest.fixture
def client(url: str) -> ollama_sdk.Client:
    return ollama_sdk.Client(host=url, timeout=20)


def call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async def run() -> tuple[int, dict[str, str], bytes]:
        data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, data=data, headers=headers) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.read()

    return asyncio.run(run())


def lines(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


# ---- discovery -----------------------------------------------------------------------------


def test_root_and_version(url: str, ollama: FakeOllama) -> None:
    for method in ("GET", "HEAD"):
        status, headers, body = call(method, url + "/")
        assert status == 200
        assert body == (b"Ollama is running" if method == "GET" else b"")
        assert headers["Content-Type"].startswith("text/plain")
    ollama.version = "0.13.5"
    status, _, body = call("GET", url + "/api/version")
    assert (status, orjson.loads(body)) == (200, {"version": "0.13.5"})
    assert call("HEAD", url + "/api/version")[0] == 200


def test_list_has_the_models_then_the_aliases(client: ollama_sdk.Client) -> None:
    models = client.list().models
    names = [m.model for m in models]
    assert names[:5] == list(FakeOllama().models)
    # Aliases naming one pulled model, each shaped as that model's entry; no wildcards, no
    # alias whose model is missing.
    assert names[5:] == ["copilot-chat", "embedder"]
    alias, target = models[5], models[0]
    assert alias.digest == target.digest
    assert alias.size == target.size
    assert alias.details == target.details


def test_show_resolves_aliases_and_reports_the_context_in_use(
    client: ollama_sdk.Client, url: str, ollama: FakeOllama
) -> None:
    info = client.show("copilot-chat")
    assert ollama.last("/api/show").body["model"] == "llama3.2:latest"
    assert info.modelinfo is not None
    assert info.modelinfo["llama.context_length"] == 8192
    assert info.modelinfo[TRAINED_CONTEXT_KEY] == 131072
    assert info.capabilities == ["completion", "tools"]
    assert info.modelinfo["general.parameter_count"] == 3212749888  # the rest as Ollama said
    # "auto": the trained length capped by max_num_ctx.
    assert client.show("qwen3:8b").modelinfo["llama.context_length"] == 16384  # type: ignore[index]
    # A model this server sets no num_ctx for is shown as Ollama shows it.
    plain = client.show("llava:7b")
    assert plain.modelinfo["llama.context_length"] == 131072  # type: ignore[index]
    assert TRAINED_CONTEXT_KEY not in plain.modelinfo  # type: ignore[operator]
    assert plain.capabilities == ["completion", "vision"]
    # The deprecated "name" is read too, as Ollama does.
    status, _, raw = call("POST", url + "/api/show", {"name": "copilot-chat"})
    assert status == 200
    assert orjson.loads(raw)["model_info"]["llama.context_length"] == 8192
    with pytest.raises(ollama_sdk.ResponseError) as info_error:
        client.show("ghost")
    assert info_error.value.status_code == 404
    assert info_error.value.error == "model 'not-pulled' not found"


def test_show_is_cut_to_the_trained_length(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    """Ollama runs a model with at most its trained context, whatever num_ctx says."""
    policy = ModelPolicy(defaults=Profile(num_ctx=200000))
    info = ollama_sdk.Client(host=root(make_shim, policy=policy)).show("llama3.2")
    assert info.modelinfo["llama.context_length"] == 131072  # type: ignore[index]


def test_ps_passes_through(client: ollama_sdk.Client) -> None:
    client.chat(model="copilot-chat", messages=HELLO)
    running = client.ps().models
    assert [(m.model, m.context_length) for m in running] == [("llama3.2:latest", 8192)]


# ---- inference -----------------------------------------------------------------------------


def test_chat_whole_and_streamed_with_a_tool_call(
    client: ollama_sdk.Client, ollama: FakeOllama
) -> None:
    call_ = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ollama.queue(Reply(content="", tool_calls=[call_]), Reply(content="", tool_calls=[call_]))
    answer = client.chat(
        model="copilot-chat", messages=HELLO, tools=[WEATHER_TOOL], options={"temperature": 0.2}
    )
    assert answer.model == "copilot-chat"
    assert answer.message.tool_calls is not None
    assert answer.message.tool_calls[0].function.name == "get_weather"
    assert answer.message.tool_calls[0].function.arguments == {"city": "Paris"}
    sent = ollama.last().body
    assert sent["model"] == "llama3.2:latest"
    assert sent["options"] == {"temperature": 0.2, "num_ctx": 8192}
    assert sent["keep_alive"] == "30m"
    assert sent["tools"][0]["function"]["name"] == "get_weather"

    parts = list(
        client.chat(model="copilot-chat", messages=HELLO, tools=[WEATHER_TOOL], stream=True)
    )
    assert {p.model for p in parts} == {"copilot-chat"}
    calls = [c for p in parts for c in p.message.tool_calls or []]
    assert [c.function.arguments for c in calls] == [{"city": "Paris"}]
    assert parts[-1].done
    assert parts[-1].eval_count == 7


def test_chat_streams_text_as_it_comes(client: ollama_sdk.Client, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="one two three", split_writes=True))
    parts = list(client.chat(model="llama3.2", messages=HELLO, stream=True))
    assert [p.message.content for p in parts] == ["one", " two", " three", ""]
    assert parts[-1].done_reason == "stop"
    assert parts[0].model == "llama3.2"  # not renamed when it is no alias


def test_client_values_win_and_unknown_fields_pass(
    client: ollama_sdk.Client, ollama: FakeOllama
) -> None:
    client.chat(
        model="copilot-chat",
        messages=HELLO,
        options={"num_ctx": 2048},
        keep_alive=0,
        format="json",
    )
    sent = ollama.last().body
    assert sent["options"] == {"num_ctx": 2048}
    assert sent["keep_alive"] == 0
    assert sent["format"] == "json"


def test_generate_whole_and_streamed(client: ollama_sdk.Client, ollama: FakeOllama) -> None:
    answer = client.generate(model="copilot-chat", prompt="Say hello")
    assert answer.response == "Hello! How can I help you today?"
    assert answer.model == "copilot-chat"
    assert ollama.last("/api/generate").body["options"] == {"num_ctx": 8192}
    parts = list(client.generate(model="qwen3:8b", prompt="Say hello", stream=True))
    assert "".join(p.response for p in parts) == "Hello! How can I help you today?"
    assert parts[-1].done
    assert parts[-1].context == [128006, 882, 128007]
    assert ollama.last("/api/generate").body["options"] == {"num_ctx": 16384}


def test_embed_and_legacy_embeddings(client: ollama_sdk.Client, ollama: FakeOllama) -> None:
    out = client.embed(model="embedder", input=["a b", "c"])
    assert len(out.embeddings) == 2
    assert len(out.embeddings[0]) == 768
    assert out.model == "embedder"
    assert ollama.last("/api/embed").body["model"] == "nomic-embed-text"
    assert ollama.last("/api/embed").body["keep_alive"] == "30m"
    single = client.embeddings(model="embedder", prompt="hello")
    assert len(single.embedding) == 768
    assert ollama.last("/api/embeddings").body["model"] == "nomic-embed-text"


def test_authorization_and_other_headers_never_reach_ollama(url: str, ollama: FakeOllama) -> None:
    client = ollama_sdk.Client(
        host=url, headers={"Authorization": "Bearer secret", "Cookie": "c=1", "X-Custom": "x"}
    )
    client.chat(model="llama3.2", messages=HELLO)
    client.show("llama3.2")
    for recorded in ollama.requests:
        sent = {k.lower() for k in recorded.headers}
        assert not sent & {"authorization", "cookie", "x-custom"}


# ---- errors in Ollama's shape --------------------------------------------------------------


def test_ollamas_retry_after_passes_through(url: str, ollama: FakeOllama) -> None:
    ollama.queue(Reply(status=429, error="too many requests", headers={"Retry-After": "7"}))
    got, headers, raw = call("POST", url + "/api/chat", {"model": "llama3.2", "messages": HELLO})
    assert got == 429
    assert headers["Retry-After"] == "7"
    assert orjson.loads(raw) == {"error": "too many requests"}


def test_errors_are_ollama_shaped_with_ollama_statuses(
    client: ollama_sdk.Client, url: str, ollama: FakeOllama
) -> None:
    with pytest.raises(ollama_sdk.ResponseError) as info:
        client.chat(model="nope", messages=HELLO)
    assert (info.value.status_code, info.value.error) == (404, "model 'nope' not found")
    with pytest.raises(ollama_sdk.ResponseError) as info:
        client.chat(model="llava:7b", messages=HELLO, tools=[WEATHER_TOOL])
    assert info.value.status_code == 400
    assert "does not support tools" in info.value.error
    ollama.queue(Reply(status=503, error="server busy, please try again."))
    with pytest.raises(ollama_sdk.ResponseError) as info:
        list(client.chat(model="llama3.2", messages=HELLO, stream=True))
    assert (info.value.status_code, info.value.error) == (503, "server busy, please try again.")
    for method, path, body, status in [
        ("POST", "/api/chat", b"{not json", 400),
        ("POST", "/api/chat", b"", 400),
        ("POST", "/api/chat", b"[1]", 400),
        ("POST", "/api/chat", {"model": "llama3.2", "options": [1]}, 400),
        ("GET", "/api/nothing", None, 404),
        ("GET", "/api/chat", None, 405),
    ]:
        got, headers, raw = call(method, url + path, body)
        assert got == status, (path, raw)
        assert headers["Content-Type"].startswith("application/json")
        error = orjson.loads(raw)
        assert list(error) == ["error"]
        assert isinstance(error["error"], str)
    # The OpenAI face keeps its own shape.
    status, _, raw = call("GET", url + "/v1/nothing")
    assert status == 404
    assert orjson.loads(raw)["error"]["code"] == "unknown_url"


def test_a_body_over_the_limit_is_a_413_in_ollama_shape(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    url = root(make_shim, max_body_size=2048)
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "x" * 4096}]}
    status, _, raw = call("POST", url + "/api/chat", body)
    assert status == 413
    assert "2048 bytes" in orjson.loads(raw)["error"]
    assert ollama.requests == []


def test_unreachable_ollama_is_a_502_in_ollama_shape(make_shim: ShimFactory) -> None:
    url = make_shim(ollama_url="http://127.0.0.1:9", connect_timeout=2).removesuffix("/v1")
    for method, path, body in [
        ("GET", "/api/version", None),
        ("POST", "/api/chat", {"model": "llama3.2", "messages": HELLO}),
    ]:
        status, _, raw = call(method, url + path, body)
        assert status == 502
        assert "Could not connect to Ollama" in orjson.loads(raw)["error"]


def test_a_stream_cut_upstream_ends_with_an_error_line(url: str, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="one two three four", cut_after=2))
    status, _, raw = call("POST", url + "/api/chat", {"model": "llama3.2", "messages": HELLO})
    assert status == 200
    got = lines(raw)
    assert [g["message"]["content"] for g in got[:2]] == ["one", " two"]
    assert list(got[-1]) == ["error"]
    assert "closed the connection" in got[-1]["error"]
    # The ollama client raises it instead of returning a cut answer.
    ollama.queue(Reply(content="one two three four", cut_after=2))
    client = ollama_sdk.Client(host=url)
    with pytest.raises(ollama_sdk.ResponseError, match="closed the connection"):
        list(client.generate(model="llama3.2", prompt="count", stream=True))


def test_leaving_a_native_stream_stops_ollama(url: str, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content=" ".join(["word"] * 400), chunk_delay=0.02))

    async def leave_early() -> float:
        async with aiohttp.ClientSession() as session:
            body = {"model": "llama3.2", "messages": HELLO}
            resp = await session.post(f"{url}/api/chat", json=body)
            await resp.content.readline()
            left = time.monotonic()
            resp.close()
            return left

    left = asyncio.run(leave_early())
    assert ollama.disconnected.wait(2)
    assert ollama.disconnect_times[0] - left < 0.1


def test_shutdown_ends_native_streams_with_an_error_line(
    loop_thread: LoopThread, ollama: FakeOllama
) -> None:
    settings = Settings(host="127.0.0.1", port=0, ollama_url=ollama.url, shutdown_grace=0.3)
    runner = loop_thread.run(start(settings))
    url = f"http://127.0.0.1:{bound_port(runner, 0)}"
    ollama.queue(Reply(content=" ".join(["w"] * 1000), chunk_delay=0.01))

    async def scenario() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            body = {"model": "llama3.2", "messages": HELLO}
            resp = await session.post(f"{url}/api/chat", json=body)
            await resp.content.readline()
            stopping = asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop_thread.loop)
            )
            got = lines(await resp.read())
            await stopping
            return got

    got = asyncio.run(scenario())
    assert list(got[-1]) == ["error"]
    assert "shutting down" in got[-1]["error"]
    assert all("message" in line for line in got[:-1])


def test_an_error_line_from_ollama_passes_through(url: str, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="one two three", error_after=1, error="runner crashed"))
    status, _, raw = call("POST", url + "/api/chat", {"model": "copilot-chat", "messages": HELLO})
    got = lines(raw)
    assert status == 200
    assert got[0]["model"] == "copilot-chat"
    assert got[-1] == {"error": "runner crashed"}
    assert len(got) == 2


def test_the_limiter_answers_429_in_ollama_shape(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    url = root(make_shim, max_concurrency=1, max_queue=0)
    ollama.queue(Reply(first_byte_delay=0.5))

    async def two() -> list[tuple[int, str | None, bytes]]:
        async with aiohttp.ClientSession() as session:

            async def one(delay: float) -> tuple[int, str | None, bytes]:
                await asyncio.sleep(delay)
                body = {"model": "llama3.2", "messages": HELLO, "stream": False}
                async with session.post(f"{url}/api/chat", json=body) as resp:
                    return resp.status, resp.headers.get("Retry-After"), await resp.read()

            return await asyncio.gather(one(0), one(0.1))

    (first, _, _), (second, retry, raw) = asyncio.run(two())
    assert (first, second, retry) == (200, 429, "1")
    assert "retry shortly" in orjson.loads(raw)["error"]


def test_native_requests_are_counted(url: str, client: ollama_sdk.Client) -> None:
    client.chat(model="copilot-chat", messages=HELLO)
    list(client.chat(model="copilot-chat", messages=HELLO, stream=True))
    _, _, raw = call("GET", url + "/metrics")
    text = raw.decode()
    assert 'oai2ollama_requests_total{route="/api/chat",model="copilot-chat",status="200"}' in text
    assert 'oai2ollama_tokens_total{direction="completion",model="copilot-chat"}' in text
    assert 'oai2ollama_time_to_first_token_seconds_count{route="/api/chat"}' in text


# ---- model management ----------------------------------------------------------------------


MANAGEMENT = [
    ("POST", "/api/pull", {"model": "phi4"}),
    ("POST", "/api/push", {"model": "llama3.2"}),
    ("POST", "/api/create", {"model": "mine", "from": "llama3.2"}),
    ("POST", "/api/copy", {"source": "llama3.2", "destination": "copy"}),
    ("DELETE", "/api/delete", {"model": "llama3.2"}),
    ("POST", "/api/blobs/sha256:" + "0" * 64, b"data"),
    ("HEAD", "/api/blobs/sha256:" + "0" * 64, None),
]


@pytest.mark.parametrize(("method", "path", "body"), MANAGEMENT)
def test_model_management_is_refused_by_default(
    url: str, ollama: FakeOllama, method: str, path: str, body: Any
) -> None:
    status, _, raw = call(method, url + path, body)
    assert status == 403
    if method != "HEAD":
        assert "--allow-model-management" in orjson.loads(raw)["error"]
    assert [r.path for r in ollama.requests] == []
    assert "llama3.2:latest" in ollama.models


def test_model_management_passes_through_when_allowed(
    make_shim: ShimFactory, ollama: FakeOllama, tmp_path: Path
) -> None:
    client = ollama_sdk.Client(host=root(make_shim, allow_model_management=True))
    progress = list(client.pull("phi4", stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest"
    assert statuses[-1] == "success"
    assert [p.completed for p in progress if p.total] == [None, 1009688688, 2019377376]
    assert "phi4:latest" in [m.model for m in client.list().models]
    assert client.pull("phi4").status == "success"  # stream: false, one answer
    with pytest.raises(ollama_sdk.ResponseError, match="file does not exist"):
        list(client.pull("missing-model", stream=True))

    assert client.copy("phi4", "phi4-copy").status == "success"
    assert client.delete("phi4-copy").status == "success"
    with pytest.raises(ollama_sdk.ResponseError) as info:
        client.delete("phi4-copy")
    assert info.value.status_code == 404
    assert [p.status for p in client.create(model="mine", from_="llama3.2", stream=True)][-1] == (
        "success"
    )
    assert client.show("mine").capabilities == ["completion", "tools"]
    assert list(client.push("mine", stream=True))[-1].status == "success"

    blob = tmp_path / "weights.gguf"
    blob.write_bytes(b"GGUF" + bytes(200_000))
    digest = client.create_blob(blob)
    assert ollama.blobs == {digest: 200_004}


def test_management_needs_a_key_first(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    """A key is needed first: without one, management is a 401 like everything else."""
    url = root(make_shim, api_keys=("k",), allow_model_management=True)
    status, _, _ = call("POST", url + "/api/pull", {"model": "phi4"})
    assert status == 401
    client = ollama_sdk.Client(host=url, headers={"Authorization": "Bearer k"})
    assert client.pull("phi4").status == "success"
