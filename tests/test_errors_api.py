"""Every error the shim can return: OpenAI's shape, the right status, the right SDK exception."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from .conftest import ShimFactory
from .fake_ollama import FakeOllama, Reply

MESSAGES = [{"role": "user", "content": "Say hello"}]


def http(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), orjson.loads(err.read())


def assert_openai_error(body: Any, type_: str, param: str | None = None) -> dict[str, Any]:
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["type"] == type_
    assert error["param"] == param
    return error


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2]", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "llama3.2"}', "messages"),
        (b'{"model": "llama3.2", "messages": {"role": "user"}}', "messages"),
        (
            b'{"model": "llama3.2", "messages": [{"role": "user", "content": 5}]}',
            "messages[0].content",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            "temperature",
        ),
    ],
)
def test_bad_bodies_are_400_with_param(base_url: str, body: bytes, param: str | None) -> None:
    status, headers, answer = http(
        f"{base_url}/chat/completions", "POST", body, {"Content-Type": "application/json"}
    )
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert_openai_error(answer, "invalid_request_error", param)


def test_sdk_raises_bad_request_for_invalid_fields(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="llama3.2", messages=MESSAGES, top_p=3)
    assert info.value.status_code == 400
    assert info.value.param == "top_p"  # type: ignore[attr-defined]


def test_unknown_route_and_wrong_method(base_url: str) -> None:
    status, _, body = http(f"{base_url}/nothing/here")
    assert status == 404
    assert assert_openai_error(body, "invalid_request_error")["code"] == "unknown_url"
    status, _, body = http(f"{base_url}/chat/completions")
    assert status == 405
    assert_openai_error(body, "invalid_request_error")


def test_body_over_the_limit_is_413(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    base_url = make_shim(max_body_size=4096)
    big = [{"role": "user", "content": "x" * 10_000}]
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="llama3.2", messages=big)
    assert info.value.status_code == 413
    assert_openai_error(info.value.body and {"error": info.value.body}, "invalid_request_error")
    assert ollama.requests == []


# ---- authentication ------------------------------------------------------------------------


def test_api_key(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    base_url = make_shim(api_keys=("s3cret", "other"))
    wrong = openai.OpenAI(base_url=base_url, api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.models.list()
    assert info.value.code == "invalid_api_key"
    status, _, body = http(f"{base_url}/models")
    assert status == 401
    assert "Missing API key" in assert_openai_error(body, "invalid_request_error")["message"]
    right = openai.OpenAI(base_url=base_url, api_key="s3cret", max_retries=0)
    assert right.chat.completions.create(model="llama3.2", messages=MESSAGES).choices
    # Liveness stays open.
    assert http(base_url.removesuffix("/v1") + "/healthz")[0] == 200


def test_without_a_key_configured_any_key_works(client: openai.OpenAI) -> None:
    assert client.models.list().data


# ---- Ollama's errors -----------------------------------------------------------------------


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert info.value.code == "model_not_found"
    assert "gpt-4o" in info.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-4o")
    assert info.value.code == "model_not_found"


def test_ollama_400_keeps_its_message(client: openai.OpenAI) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="llava:7b", messages=MESSAGES, tools=[tool])
    assert "does not support tools" in info.value.message


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_500_is_500_with_message(
    client: openai.OpenAI, ollama: FakeOllama, stream: bool
) -> None:
    ollama.queue(Reply(status=500, error="llama runner process has terminated: signal: killed"))
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=stream)
    assert info.value.status_code == 500
    assert "runner process has terminated" in info.value.message


def test_ollama_busy_is_503_with_retry_after(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(
        Reply(status=503, error="server busy, please try again.  maximum pending requests exceeded")
    )
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="llama3.2", messages=MESSAGES)
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"] == "1"
    assert "server busy" in info.value.message


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("status", "retry_after", "exception"),
    [
        (429, "7", openai.RateLimitError),
        (503, "9", openai.InternalServerError),
    ],
)
def test_ollama_later_statuses_pass_through_with_its_retry_after(
    base_url: str,
    ollama: FakeOllama,
    stream: bool,
    status: int,
    retry_after: str,
    exception: type[openai.APIStatusError],
) -> None:
    ollama.queue(Reply(status=status, error="slow down", headers={"Retry-After": retry_after}))
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
    with pytest.raises(exception) as info:
        client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=stream)
    assert info.value.status_code == status
    assert info.value.response.headers["retry-after"] == retry_after
    assert "slow down" in info.value.message


def test_ollama_429_without_retry_after_and_a_bad_one_are_not_invented(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    ollama.queue(
        Reply(status=429, error="too many"),
        Reply(status=429, error="too many", headers={"Retry-After": "soon, maybe"}),
    )
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="llama3.2", messages=MESSAGES)
        assert "retry-after" not in info.value.response.headers


def test_ollama_413_is_413_and_not_retried(base_url: str, ollama: FakeOllama) -> None:
    ollama.queue(*[Reply(status=413, error="request entity too large")] * 3)
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=2)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="llama3.2", messages=MESSAGES)
    assert info.value.status_code == 413
    error = assert_openai_error({"error": info.value.body}, "invalid_request_error")
    assert "request entity too large" in error["message"]
    assert len([r for r in ollama.requests if r.path == "/api/chat"]) == 1


def test_ollama_501_is_a_400_keeping_its_message(base_url: str, ollama: FakeOllama) -> None:
    """A generative model whose runner cannot embed: Ollama answers 501. Without that answer
    the same model embeds: a missing `embedding` capability is not refused up front."""
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=2)
    assert client.embeddings.create(model="llama3.2", input="hello").data[0].embedding
    ollama.requests.clear()
    ollama.embed_refused = {"llama3.2"}
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="llama3.2", input="hello")
    assert info.value.status_code == 400
    error = assert_openai_error({"error": info.value.body}, "invalid_request_error", "model")
    assert error["code"] == "model_not_supported"
    assert "this model does not support embeddings" in error["message"]
    assert "llama3.2" in error["message"]
    assert len([r for r in ollama.requests if r.path == "/api/embed"]) == 1


def test_unreachable_ollama_is_502_naming_the_url_quickly(make_shim: ShimFactory) -> None:
    port = closed_port()
    base_url = make_shim(ollama_url=f"http://127.0.0.1:{port}")
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
    started = time.monotonic()
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=stream)
        assert info.value.status_code == 502
        assert info.value.code == "upstream_unavailable"
        assert f"127.0.0.1:{port}" in info.value.message
    with pytest.raises(openai.InternalServerError):
        client.models.list()
    assert time.monotonic() - started < 3
    status, _, body = http(base_url.removesuffix("/v1") + "/readyz")
    assert status == 503
    assert f"127.0.0.1:{port}" in assert_openai_error(body, "server_error")["message"]


def test_readyz_and_healthz(base_url: str) -> None:
    root = base_url.removesuffix("/v1")
    status, _, body = http(root + "/readyz")
    assert status == 200
    assert body["status"] == "ready"
    assert body["ollama"]["version"] == "0.12.11"
    assert http(root + "/healthz")[2]["status"] == "ok"


def test_slow_ollama_is_504(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    client = openai.OpenAI(
        base_url=make_shim(first_byte_timeout=0.3, idle_timeout=0.3), api_key="x", max_retries=0
    )
    ollama.queue(Reply(first_byte_delay=3), Reply(first_byte_delay=3))
    for stream in (False, True):
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=stream)
        assert info.value.status_code == 504
        assert info.value.code == "upstream_timeout"
        assert time.monotonic() - started < 2


# ---- failures after the stream started -----------------------------------------------------


def collect(stream: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_error_line_mid_stream_becomes_an_error_event(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    ollama.queue(
        Reply(content="one two three four", error_after=2, error="CUDA error: out of memory")
    )
    stream = client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="out of memory"):
        collect(stream)


def test_connection_cut_mid_stream_becomes_an_error_event(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    ollama.queue(Reply(content="one two three four", cut_after=2))
    stream = client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="closed the connection"):
        collect(stream)


def test_silence_mid_stream_becomes_a_timeout_event(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    client = openai.OpenAI(
        base_url=make_shim(first_byte_timeout=0.3, idle_timeout=0.3), api_key="x", max_retries=0
    )
    ollama.queue(Reply(content="one two three", chunk_delay=2))
    stream = client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="did not answer in time"):
        collect(stream)


def test_raw_error_event_shape(base_url: str, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="a b c", error_after=1, error="model crashed"))
    body = orjson.dumps({"model": "llama3.2", "messages": MESSAGES, "stream": True})
    request = urllib.request.Request(
        f"{base_url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = [e for e in resp.read().decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    last = orjson.loads(events[-1].removeprefix("data: "))
    assert_openai_error(last, "server_error")
    assert last["error"]["message"] == "model crashed"
    assert "data: [DONE]" not in events


# ---- the client going away -----------------------------------------------------------------


def test_client_disconnect_mid_stream_cancels_upstream(base_url: str, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content=" ".join(["word"] * 200), chunk_delay=0.05))

    async def read_a_little() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{base_url}/chat/completions",
                json={"model": "llama3.2", "messages": MESSAGES, "stream": True},
            ) as resp,
        ):
            assert resp.status == 200
            await resp.content.readline()
            await resp.content.readline()
        # Leaving the block closes the connection mid-stream.

    asyncio.run(read_a_little())
    started = time.monotonic()
    assert ollama.disconnected.wait(2)
    assert time.monotonic() - started < 1
    assert ollama.disconnects == 1


def test_client_disconnect_while_waiting_cancels_upstream(
    base_url: str, ollama: FakeOllama
) -> None:
    ollama.queue(Reply(hang=True))
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="llama3.2", messages=MESSAGES)
    assert ollama.disconnected.wait(2)
