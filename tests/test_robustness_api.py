"""Streams that never die silently, timeouts, backpressure, shutdown: counted, bounded, loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest

from oai2ollama.config import Settings
from oai2ollama.server import bound_port, start

from .conftest import ShimFactory
from .fake_ollama import FakeOllama, LoopThread, Reply, serve_app

MESSAGES = [{"role": "user", "content": "hello"}]
BODY = {"model": "llama3.2", "messages": MESSAGES, "stream": True}


def raw_stream(url: str, body: dict[str, Any], timeout: float = 10) -> tuple[int, list[str]]:
    """POST and return the status and the raw SSE blocks (comments included)."""

    async def run() -> tuple[int, list[str]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{url}/chat/completions", json=body, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp,
        ):
            text = (await resp.read()).decode()
            return resp.status, [b for b in text.split("\n\n") if b]

    return asyncio.run(run())


# ---- keep-alives ---------------------------------------------------------------------------


def test_keepalive_comments_while_ollama_loads(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    url = make_shim(keepalive_interval=0.1)
    ollama.queue(Reply(content="Hi there", first_byte_delay=0.55))
    status, blocks = raw_stream(url, BODY)
    assert status == 200
    first_data = next(i for i, b in enumerate(blocks) if b.startswith("data: "))
    assert first_data >= 3
    assert all(b == ": keep-alive" for b in blocks[:first_data])
    assert blocks[-1] == "data: [DONE]"
    # And the SDK, which ignores comments, sees a normal answer.
    ollama.queue(Reply(content="Hi there", first_byte_delay=0.35))
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    stream = client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "Hi there"


def test_keepalive_comments_while_a_stream_pauses(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    url = make_shim(keepalive_interval=0.1)
    ollama.queue(Reply(content="slow words", chunk_delay=0.45))
    _, blocks = raw_stream(url, BODY)
    data = [i for i, b in enumerate(blocks) if b.startswith("data: ")]
    between = blocks[data[1] : data[2]]
    assert ": keep-alive" in between


def test_an_error_after_keepalives_is_an_error_event(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    url = make_shim(keepalive_interval=0.1)
    ollama.queue(Reply(status=500, error="model failed to load", first_byte_delay=0.35))
    status, blocks = raw_stream(url, BODY)
    assert status == 200  # committed by the keep-alives
    assert blocks[0] == ": keep-alive"
    assert '"model failed to load"' in blocks[-1]
    assert "[DONE]" not in blocks[-1]
    ollama.queue(Reply(status=500, error="model failed to load", first_byte_delay=0.35))
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIError, match="failed to load"):
        list(client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True))


# ---- timeouts ------------------------------------------------------------------------------


def test_first_byte_and_idle_timeouts_are_separate(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    client = openai.OpenAI(
        base_url=make_shim(first_byte_timeout=2, idle_timeout=0.3, keepalive_interval=0),
        api_key="x",
        max_retries=0,
    )
    # A slow start is fine within the first-byte timeout...
    ollama.queue(Reply(content="a b c", first_byte_delay=0.6))
    stream = client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "a b c"
    # ...but a pause between chunks longer than the idle timeout is not.
    ollama.queue(Reply(content="a b c", chunk_delay=0.8))
    started = time.monotonic()
    with pytest.raises(openai.APIError, match="did not answer in time"):
        list(client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True))
    assert time.monotonic() - started < 0.75


def test_whole_request_timeout(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    client = openai.OpenAI(
        base_url=make_shim(request_timeout=0.5, keepalive_interval=0), api_key="x", max_retries=0
    )
    ollama.queue(Reply(content=" ".join(["w"] * 50), chunk_delay=0.05))
    with pytest.raises(openai.APIError, match="did not answer in time"):
        list(client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True))


# ---- the client going away -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
def test_disconnect_cancels_upstream_within_100ms(
    base_url: str, ollama: FakeOllama, stream: bool
) -> None:
    ollama.queue(Reply(content=" ".join(["word"] * 400), chunk_delay=0.02, hang=not stream))

    async def leave_early() -> float:
        async with aiohttp.ClientSession() as session:
            resp = await session.post(
                f"{base_url}/chat/completions", json={**BODY, "stream": stream}
            )
            if stream:
                await resp.content.readline()
            else:
                await asyncio.sleep(0.2)
            left = time.monotonic()
            resp.close()
            return left

    if not stream:
        # A non-stream request waits for the status line, so leave while it is still pending.
        async def leave_pending() -> float:
            async with aiohttp.ClientSession() as session:
                task = asyncio.ensure_future(
                    session.post(f"{base_url}/chat/completions", json={**BODY, "stream": False})
                )
                await asyncio.sleep(0.2)
                left = time.monotonic()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return left

        left = asyncio.run(leave_pending())
    else:
        left = asyncio.run(leave_early())
    assert ollama.disconnected.wait(2)
    assert ollama.disconnect_times[0] - left < 0.1


# ---- Ollama dying mid-stream and coming back -----------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def mortal(loop_thread: LoopThread) -> Iterator[FakeOllama]:
    fake = FakeOllama()
    port = free_port()
    runner, _ = loop_thread.run(serve_app(fake.app(), port))
    fake.url = f"http://127.0.0.1:{port}"
    fake.runner = runner  # type: ignore[attr-defined]
    yield fake
    loop_thread.run(fake.runner.cleanup())  # type: ignore[attr-defined]


def test_killed_ollama_ends_every_stream_with_an_error_and_recovers(
    loop_thread: LoopThread, mortal: FakeOllama
) -> None:
    fake = mortal
    settings = Settings(host="127.0.0.1", port=0, ollama_url=fake.url, keepalive_interval=0)
    runner = loop_thread.run(start(settings))
    url = f"http://127.0.0.1:{bound_port(runner, 0)}/v1"
    streams = 20
    fds_before = open_fds()
    tasks_before = loop_thread.run(_task_count())
    fake.queue(*[Reply(content=" ".join(["w"] * 500), chunk_delay=0.02) for _ in range(streams)])

    async def run_streams() -> list[tuple[str, float]]:
        async def one(session: aiohttp.ClientSession) -> tuple[str, float]:
            async with session.post(f"{url}/chat/completions", json=BODY) as resp:
                last = ""
                async for line in resp.content:
                    if line.strip():
                        last = line.decode().strip()
                return last, time.monotonic()

        async with aiohttp.ClientSession() as session:
            pending = [asyncio.ensure_future(one(session)) for _ in range(streams)]
            while len(fake.streaming) < streams:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            killed_at = time.monotonic()
            assert loop_thread.loop.call_soon_threadsafe(fake.kill) is not None
            results = await asyncio.gather(*pending)
            return [(last, at - killed_at) for last, at in results]

    try:
        results = asyncio.run(run_streams())
        assert len(results) == streams
        for last, after in results:
            assert '"error"' in last, last
            assert "closed the connection" in last
            assert after < 1.0
        # Ollama is back (it never went away for new connections): the pool is not poisoned.
        client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
        for _ in range(5):
            out = client.chat.completions.create(model="llama3.2", messages=MESSAGES)
            assert out.choices[0].message.content
        client.close()
        time.sleep(0.2)
        assert loop_thread.run(_task_count()) <= tasks_before
        # Both ends of the shim's one pooled connection to Ollama live in this process.
        assert open_fds() <= fds_before + 2
    finally:
        loop_thread.run(runner.cleanup())


def test_restarted_ollama_is_used_again(loop_thread: LoopThread) -> None:
    port = free_port()
    fake = FakeOllama()
    runner, _ = loop_thread.run(serve_app(fake.app(), port))
    settings = Settings(host="127.0.0.1", port=0, ollama_url=f"http://127.0.0.1:{port}")
    shim = loop_thread.run(start(settings))
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{bound_port(shim, 0)}/v1", api_key="x", max_retries=0
    )
    try:
        assert client.chat.completions.create(model="llama3.2", messages=MESSAGES).choices
        loop_thread.run(runner.cleanup())
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="llama3.2", messages=MESSAGES)
        assert info.value.status_code == 502
        runner, _ = loop_thread.run(serve_app(fake.app(), port))
        assert client.chat.completions.create(model="llama3.2", messages=MESSAGES).choices
    finally:
        loop_thread.run(shim.cleanup())
        loop_thread.run(runner.cleanup())


async def _task_count() -> int:
    """Tasks alive in the servers' loop, but for the ones serving idle keep-alive connections."""
    names = [repr(t.get_coro()) for t in asyncio.all_tasks()]
    return sum("RequestHandler.start" not in name for name in names)


# ---- backpressure --------------------------------------------------------------------------


def test_concurrency_cap_queues_then_answers_429(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    url = make_shim(max_concurrency=1, max_queue=1)
    ollama.queue(*[Reply(first_byte_delay=0.4) for _ in range(3)])

    async def three() -> list[tuple[int, str | None]]:
        async with aiohttp.ClientSession() as session:

            async def one(delay: float) -> tuple[int, str | None]:
                await asyncio.sleep(delay)
                body = {**BODY, "stream": False}
                async with session.post(f"{url}/chat/completions", json=body) as resp:
                    await resp.read()
                    return resp.status, resp.headers.get("Retry-After")

            return await asyncio.gather(one(0), one(0.05), one(0.1))

    results = asyncio.run(three())
    assert sorted(status for status, _ in results) == [200, 200, 429]
    assert dict(results)[429] == "1"
    # The SDK retries a 429 by itself and then succeeds.
    ollama.queue(Reply(first_byte_delay=0.3), Reply(first_byte_delay=0.3))
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=3)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.chat.completions.create(model="llama3.2", messages=MESSAGES)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []


# ---- graceful shutdown ---------------------------------------------------------------------


def test_shutdown_lets_short_requests_finish_and_ends_long_streams_with_an_error(
    loop_thread: LoopThread, ollama: FakeOllama
) -> None:
    settings = Settings(
        host="127.0.0.1", port=0, ollama_url=ollama.url, shutdown_grace=0.5, keepalive_interval=0
    )
    runner = loop_thread.run(start(settings))
    url = f"http://127.0.0.1:{bound_port(runner, 0)}/v1"
    ollama.queue(
        Reply(content=" ".join(["w"] * 1000), chunk_delay=0.01),
        Reply(content="quick", first_byte_delay=0.2),
    )

    async def scenario() -> tuple[str, int, float]:
        async with aiohttp.ClientSession() as session:
            long = await session.post(f"{url}/chat/completions", json=BODY)
            await long.content.readline()
            short = asyncio.ensure_future(
                session.post(f"{url}/chat/completions", json={**BODY, "stream": False})
            )
            await asyncio.sleep(0.05)
            stopping = asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop_thread.loop)
            )
            started = time.monotonic()
            last = ""
            async for line in long.content:
                if line.strip():
                    last = line.decode().strip()
            short_resp = await short
            await short_resp.read()
            await stopping
            return last, short_resp.status, time.monotonic() - started

    last, short_status, took = asyncio.run(scenario())
    assert short_status == 200
    assert "server_shutting_down" in last
    assert took < 2.5


def test_metrics_count_what_happened(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    url = make_shim(api_keys=("m-key",))
    client = openai.OpenAI(base_url=url, api_key="m-key", max_retries=0)
    client.chat.completions.create(model="llama3.2", messages=MESSAGES)
    list(client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing-model", messages=MESSAGES)
    root = url.removesuffix("/v1")

    async def scrape(key: str | None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with aiohttp.ClientSession() as s, s.get(f"{root}/metrics", headers=headers) as r:
            return r.status, await r.text()

    assert asyncio.run(scrape(None))[0] == 401
    status, text = asyncio.run(scrape("m-key"))
    assert status == 200
    assert (
        'oai2ollama_requests_total{route="/v1/chat/completions",model="llama3.2",status="200"}'
        in text
    )
    assert 'model="other",status="404"' in text  # a name Ollama does not know: no label
    assert 'oai2ollama_tokens_total{direction="completion",model="llama3.2"}' in text
    assert "oai2ollama_time_to_first_token_seconds_count" in text
    assert "oai2ollama_open_streams 0" in text
    ollama.queue(Reply(status=500, error="boom"))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="llama3.2", messages=MESSAGES)
    assert 'oai2ollama_upstream_errors_total{kind="None"}' not in asyncio.run(scrape("m-key"))[1]
    assert "oai2ollama_upstream_errors_total{kind=" in asyncio.run(scrape("m-key"))[1]
    assert 'le="+Inf"' in text
