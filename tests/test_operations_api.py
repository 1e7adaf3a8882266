"""What an operator sees: metrics, request ids and log fields, and CORS as browsers need it."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from multidict import CIMultiDict

from oai2ollama.config import Settings
from oai2ollama.logs import JsonFormatter, TextFormatter
from oai2ollama.policy import ModelPolicy
from oai2ollama.server import METRICS, bound_port, start

from .conftest import ShimFactory
from .fake_ollama import FakeOllama, LoopThread, Reply

MESSAGES = [{"role": "user", "content": "hello"}]


def call(
    method: str, url: str, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, CIMultiDict[str], bytes]:
    async def run() -> tuple[int, CIMultiDict[str], bytes]:
        data = orjson.dumps(body) if body is not None else None
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, headers=headers, data=data) as resp,
        ):
            return resp.status, CIMultiDict(resp.headers), await resp.read()

    return asyncio.run(run())


def scrape(url: str) -> tuple[str, str]:
    status, headers, body = call("GET", url.removesuffix("/v1") + "/metrics")
    assert status == 200
    return headers["Content-Type"], body.decode()


def count(text: str, pattern: str) -> int:
    return sum(1 for line in text.splitlines() if re.search(pattern, line))


def access_records(caplog: pytest.LogCaptureFixture, *ids: str) -> dict[str, logging.LogRecord]:
    """The access-log records of these requests (written just after the answer: wait a little)."""
    deadline = time.monotonic() + 5
    while True:
        found = {
            r.request_id: r  # type: ignore[attr-defined]
            for r in caplog.records
            if r.name == "oai2ollama.access"
        }
        if all(i in found for i in ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


# ---- metrics -------------------------------------------------------------------------------


def test_only_models_ollama_knows_and_aliases_get_labels(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    policy = ModelPolicy(aliases=(("gpt-4o", "llama3.2"), ("gpt-3.5*", "llama3.2")))
    url = make_shim(policy=policy, keepalive_interval=4.5)
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    for i in range(70):
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=f"nope-{i}", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="invented", messages=[])
    for model in ("llama3.2", "gpt-4o", "gpt-3.5-turbo-0125", "gpt-3.5-turbo-16k"):
        client.chat.completions.create(model=model, messages=MESSAGES)
    _, text = scrape(url)
    assert "nope-" not in text
    assert "invented" not in text
    assert 'model="other",status="404"} 70' in text
    assert 'model="llama3.2",status="200"} 1' in text
    assert 'model="gpt-4o",status="200"} 1' in text
    assert 'model="gpt-3.5*",status="200"} 2' in text
    assert "gpt-3.5-turbo" not in text


def test_route_is_the_client_route_everywhere(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    url = make_shim(keepalive_interval=4.6)
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    list(client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True))
    list(client.responses.create(model="llama3.2", input="hi", stream=True))
    _, text = scrape(url)
    routes = set(re.findall(r'route="([^"]*)"', text))
    assert "/api/chat" not in routes
    assert 'oai2ollama_time_to_first_token_seconds_count{route="/v1/chat/completions"} 1' in text
    assert 'oai2ollama_time_to_first_token_seconds_count{route="/v1/responses"} 1' in text


def test_a_stream_ending_with_an_error_event_is_counted_as_that_error(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    url = make_shim(keepalive_interval=4.7)
    ollama.queue(Reply(content="one two three four", error_after=2, error="model crashed"))
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True))
    deadline = time.monotonic() + 5
    while "oai2ollama_requests_total{" not in (text := scrape(url)[1]):
        assert time.monotonic() < deadline  # counted just after the stream ends
        time.sleep(0.02)
    line = next(ln for ln in text.splitlines() if ln.startswith("oai2ollama_requests_total{"))
    assert 'route="/v1/chat/completions"' in line
    assert 'status="200"' not in line
    assert re.search(r'status="5\d\d"} 1$', line)


def test_a_stream_ended_by_shutdown_is_counted_as_503(
    loop_thread: LoopThread, ollama: FakeOllama
) -> None:
    settings = Settings(
        host="127.0.0.1", port=0, ollama_url=ollama.url, shutdown_grace=0.2, keepalive_interval=0
    )
    runner = loop_thread.run(start(settings))
    url = f"http://127.0.0.1:{bound_port(runner, 0)}/v1"
    ollama.queue(Reply(content=" ".join(["w"] * 1000), chunk_delay=0.01))

    async def scenario() -> str:
        async with aiohttp.ClientSession() as session:
            body = {"model": "llama3.2", "messages": MESSAGES, "stream": True}
            resp = await session.post(f"{url}/chat/completions", json=body)
            await resp.content.readline()
            stopping = asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop_thread.loop)
            )
            text = (await resp.read()).decode()
            await stopping
            return text

    assert "server_shutting_down" in asyncio.run(scenario())
    requests = runner.app[METRICS].requests
    assert [(route, status) for route, _, status in requests] == [("/v1/chat/completions", 503)]


def test_metrics_have_process_build_and_ollama_up(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    content_type, text = scrape(make_shim())
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        value = float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
        assert value > 0
    assert re.search(r'^oai2ollama_build_info\{version="[^"]+",.*\} 1$', text, re.M)
    assert "\noai2ollama_ollama_up 1\n" in text
    _, down = scrape(make_shim(ollama_url="http://127.0.0.1:9", connect_timeout=1))
    assert "\noai2ollama_ollama_up 0\n" in down


# ---- request ids and log fields ------------------------------------------------------------


def test_request_id_is_read_or_made_and_returned_on_every_answer(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    url = make_shim(api_keys=("k",), cors_origins=("app://x",))
    auth = {"Authorization": "Bearer k"}
    body = {"model": "llama3.2", "messages": MESSAGES}
    answers = [
        call("GET", f"{url}/models", auth),
        call("GET", f"{url}/models"),  # 401
        call("GET", f"{url}/nowhere", auth),  # 404
        call("POST", f"{url}/chat/completions", auth, body),
        call("POST", f"{url}/chat/completions", auth, {**body, "stream": True}),
        call("POST", f"{url}/chat/completions", auth, {"model": "llama3.2"}),  # 400
        call("GET", url.removesuffix("/v1") + "/healthz"),
        call(
            "OPTIONS",
            f"{url}/models",
            {"Origin": "app://x", "Access-Control-Request-Method": "GET"},
        ),
    ]
    ids = [headers.get("X-Request-Id") for _, headers, _ in answers]
    assert all(ids), ids
    assert len(set(ids)) == len(ids)
    _, headers, _ = call("GET", f"{url}/models", {**auth, "X-Request-Id": "trace-abc.123"})
    assert headers["X-Request-Id"] == "trace-abc.123"
    _, headers, _ = call("GET", f"{url}/models", {**auth, "X-Request-Id": "x" * 500})
    assert headers["X-Request-Id"] != "x" * 500  # not an id we keep: a new one


def test_log_lines_carry_id_client_stream_local_model_and_error(
    make_shim: ShimFactory, ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    policy = ModelPolicy(aliases=(("gpt-4o", "llama3.2"),))
    url = make_shim(policy=policy, keepalive_interval=4.8)
    caplog.set_level(logging.INFO)
    ollama.queue(Reply(), Reply(content="one two three", error_after=1, error="crashed"))
    body = {"model": "gpt-4o", "messages": MESSAGES}
    call("POST", f"{url}/chat/completions", {"X-Request-Id": "req-one"}, body)
    call("POST", f"{url}/chat/completions", {"X-Request-Id": "req-two"}, {**body, "stream": True})
    access = access_records(caplog, "req-one", "req-two")
    one, two = access["req-one"], access["req-two"]
    assert (one.client, one.model, one.local_model, one.stream, one.error) == (
        "127.0.0.1",
        "gpt-4o",
        "llama3.2",
        False,
        None,
    )
    assert two.stream is True
    assert two.error
    assert "local=llama3.2" in two.getMessage()
    assert f"error={two.error}" in two.getMessage()
    warning = next(r for r in caplog.records if "stream ended with an error" in r.getMessage())
    assert warning.request_id == "req-two"
    assert warning.client == "127.0.0.1"


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    make_shim: ShimFactory, ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    forwarded = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}
    trusting = make_shim(trusted_proxies=("127.0.0.0/8", "203.0.113.7"))
    call("GET", f"{trusting}/models", {**forwarded, "X-Request-Id": "via-proxy"})
    call("GET", f"{make_shim()}/models", {**forwarded, "X-Request-Id": "direct"})
    access = access_records(caplog, "via-proxy", "direct")
    assert access["via-proxy"].client == "198.51.100.9"
    assert access["direct"].client == "127.0.0.1"


def test_text_and_json_log_lines_name_the_request() -> None:
    record = logging.makeLogRecord(
        {
            "name": "oai2ollama",
            "levelno": 30,
            "levelname": "WARNING",
            "msg": "stream ended with an error: %s",
            "args": ("boom",),
            "request_id": "abc",
            "client": "10.1.2.3",
        }
    )
    assert (
        TextFormatter()
        .format(record)
        .endswith("stream ended with an error: boom [id=abc client=10.1.2.3]")
    )
    line = orjson.loads(JsonFormatter().format(record))
    assert (line["request_id"], line["client"]) == ("abc", "10.1.2.3")


# ---- CORS ----------------------------------------------------------------------------------


def test_preflight_lists_the_methods_the_route_allows(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    url = make_shim(cors_origins=("https://app.example",))

    def preflight(path: str, method: str) -> tuple[int, CIMultiDict[str]]:
        headers = {"Origin": "https://app.example", "Access-Control-Request-Method": method}
        status, got, _ = call("OPTIONS", f"{url}{path}", headers)
        return status, got

    status, headers = preflight("/responses/resp_123", "DELETE")
    assert status == 204
    methods = {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "DELETE", "OPTIONS"} <= methods
    assert "POST" not in methods
    status, headers = preflight("/chat/completions", "POST")
    methods = {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")}
    assert methods == {"POST", "OPTIONS"}
    assert "Origin" in headers["Vary"]


def test_vary_origin_on_every_answer_when_cors_is_on(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    url = make_shim(cors_origins=("https://app.example",))
    body = {"model": "llama3.2", "messages": MESSAGES}
    for headers in ({}, {"Origin": "https://other.example"}, {"Origin": "https://app.example"}):
        for method, path, data in (
            ("GET", "/models", None),
            ("POST", "/chat/completions", body),
            ("POST", "/chat/completions", {**body, "stream": True}),
            ("GET", "/nowhere", None),
        ):
            _, got, _ = call(method, f"{url}{path}", headers, data)
            assert "Origin" in got.get("Vary", ""), (headers, path, got)
    _, got, _ = call(
        "OPTIONS",
        f"{url}/models",
        {"Origin": "https://other.example", "Access-Control-Request-Method": "GET"},
    )
    assert "Origin" in got.get("Vary", "")
    # Without CORS nothing varies on Origin.
    _, got, _ = call("GET", f"{make_shim()}/models")
    assert "Vary" not in got


def test_shutdown_is_quick_with_nothing_in_flight(
    loop_thread: LoopThread, ollama: FakeOllama
) -> None:
    runner = loop_thread.run(start(Settings(port=0, ollama_url=ollama.url, shutdown_grace=5)))
    started = time.monotonic()
    loop_thread.run(runner.cleanup())
    assert time.monotonic() - started < 1.5
