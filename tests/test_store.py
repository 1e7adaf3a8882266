"""The Responses store: one suite run against both implementations (in memory and Redis), tenant
isolation through the API, the limits, a Redis that is down, and the memory budget measured in a
real process."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import redis

from oai2ollama.cli import build_parser, settings_from
from oai2ollama.config import Settings, SettingsError
from oai2ollama.store import (
    ENTRY_OVERHEAD,
    EntryTooLarge,
    MemoryStore,
    RedisStore,
    ResponseStore,
    redis_address,
    tenant_of,
)

from .conftest import RedisServer, ShimFactory, free_port
from .fake_ollama import FakeOllama, Reply
from .test_process import SCRIPT

StoreFactory = Callable[..., ResponseStore]


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> StoreFactory:
    if request.param == "memory":
        return lambda **kw: MemoryStore(256, **kw)
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda **kw: RedisStore(server.url(), **kw)


def run(
    factory: StoreFactory, scenario: Callable[[ResponseStore], Awaitable[Any]], **kw: Any
) -> Any:
    async def main() -> Any:
        store = factory(**kw)
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def response(response_id: str, text: str = "Hi") -> dict[str, Any]:
    message = {"type": "message", "role": "assistant", "content": [{"text": text}]}
    return {"id": response_id, "object": "response", "output": [message]}


def unique(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


# ---- one suite, both stores ---------------------------------------------------------------


def test_an_entry_keeps_the_response_and_the_whole_conversation(backend: StoreFactory) -> None:
    tenant, rid = tenant_of(unique("key")), unique("resp")
    question = [{"role": "user", "content": "Wie spät ist es? ☕"}]

    async def scenario(store: ResponseStore) -> Any:
        await store.ready()
        await store.put(tenant, response(rid), question)
        return await store.get(tenant, rid)

    entry = run(backend, scenario)
    assert entry.response == response(rid)
    assert entry.items == [*question, response(rid)["output"][0]]


def test_entries_belong_to_their_tenant(backend: StoreFactory) -> None:
    owner, other, rid = tenant_of(unique("k1")), tenant_of(unique("k2")), unique("resp")

    async def scenario(store: ResponseStore) -> Any:
        await store.put(owner, response(rid), [])
        seen = (await store.get(other, rid), await store.delete(other, rid))
        return seen, await store.get(owner, rid)

    (foreign_get, foreign_delete), own = run(backend, scenario)
    assert foreign_get is None
    assert foreign_delete is False
    assert own is not None  # another tenant's delete removed nothing


def test_delete_removes_an_entry_once(backend: StoreFactory) -> None:
    tenant, rid = "", unique("resp")

    async def scenario(store: ResponseStore) -> Any:
        await store.put(tenant, response(rid), [])
        first, second = await store.delete(tenant, rid), await store.delete(tenant, rid)
        return first, second, await store.get(tenant, rid)

    assert run(backend, scenario) == (True, False, None)


def test_entries_expire_after_the_ttl(backend: StoreFactory) -> None:
    tenant, rid = "", unique("resp")

    async def scenario(store: ResponseStore) -> Any:
        await store.put(tenant, response(rid), [])
        fresh = await store.get(tenant, rid)
        await asyncio.sleep(1.3)
        return fresh, await store.get(tenant, rid)

    fresh, later = run(backend, scenario, ttl=1)
    assert fresh is not None
    assert later is None


def test_one_entry_is_limited_in_size(backend: StoreFactory) -> None:
    tenant = ""
    small, large = unique("small"), unique("large")

    async def scenario(store: ResponseStore) -> Any:
        store.check_size([{"role": "user", "content": "x" * 1000}])
        with pytest.raises(EntryTooLarge) as before:
            store.check_size([{"role": "user", "content": "x" * 5000}])
        await store.put(tenant, response(small), [])
        with pytest.raises(EntryTooLarge) as after:  # the answer itself made it too large
            await store.put(tenant, response(large, "y" * 5000), [])
        return before.value, after.value, await store.get(tenant, large)

    before, after, stored = run(backend, scenario, max_entry=4096)
    assert before.status == after.status == 400
    assert before.code == "response_too_large"
    assert "4096 bytes" in before.message
    assert stored is None


# ---- through the API, both stores ---------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store_setting(request: pytest.FixtureRequest) -> int | str:
    if request.param == "memory":
        return 256
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url(1)


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=20)


@pytest.mark.parametrize("stream", [False, True])
def test_other_keys_cannot_read_continue_or_delete(
    make_shim: ShimFactory, ollama: FakeOllama, store_setting: int | str, stream: bool
) -> None:
    url = make_shim(api_keys=("key-one", "key-two"), responses_store=store_setting)
    one, two = sdk(url, "key-one"), sdk(url, "key-two")
    if stream:
        with one.responses.stream(model="llama3.2", input="Secret plans") as events:
            created = events.get_final_response()
    else:
        created = one.responses.create(model="llama3.2", input="Secret plans")
    unknown = "resp_" + "0" * 24

    def refused(call: Callable[[str], Any], error: type[openai.APIStatusError]) -> list[Any]:
        """What a foreign id and an unknown id get: the same answer, but for the id."""
        bodies = []
        for rid in (created.id, unknown):
            with pytest.raises(error) as info:
                call(rid)
            assert isinstance(info.value.body, dict)
            bodies.append(
                {**info.value.body, "message": info.value.body["message"].replace(rid, "ID")}
            )
        assert bodies[0] == bodies[1]
        return bodies

    [body, _] = refused(two.responses.retrieve, openai.NotFoundError)
    assert body["code"] == "response_not_found"
    refused(two.responses.delete, openai.NotFoundError)
    chats = sum(r.path == "/api/chat" for r in ollama.requests)
    [body, _] = refused(
        lambda rid: two.responses.create(model="llama3.2", previous_response_id=rid, input="And?"),
        openai.BadRequestError,
    )
    assert body["code"] == "previous_response_not_found"
    assert sum(r.path == "/api/chat" for r in ollama.requests) == chats  # nothing generated
    # The owner still has it all.
    assert one.responses.retrieve(created.id).output_text == created.output_text
    follow_up = one.responses.create(
        model="llama3.2", previous_response_id=created.id, input="And?"
    )
    assert ollama.last().body["messages"][0] == {"role": "user", "content": "Secret plans"}
    one.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        one.responses.retrieve(created.id)
    assert one.responses.retrieve(follow_up.id).id == follow_up.id


def test_a_streamed_response_is_stored_before_its_last_event(
    make_shim: ShimFactory, ollama: FakeOllama, store_setting: int | str
) -> None:
    client = sdk(make_shim(responses_store=store_setting), "any")
    other = sdk(make_shim(responses_store=store_setting), "any")
    seen = None
    with client.responses.create(model="llama3.2", input="Hello", stream=True) as events:
        for event in events:
            if event.type == "response.completed":
                # The client may continue at once, on this connection or another one.
                seen = other.responses.retrieve(event.response.id)
    assert seen is not None
    assert seen.output_text.startswith("Hello!")


def test_a_conversation_over_the_entry_limit_is_refused_before_generating(
    make_shim: ShimFactory, ollama: FakeOllama, store_setting: int | str
) -> None:
    client = sdk(make_shim(responses_store=store_setting, responses_max_entry_bytes=4096), "k")
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="llama3.2", input="x" * 5000)
    assert info.value.code == "response_too_large"
    assert "--responses-max-entry-bytes" in info.value.message
    assert not any(r.path == "/api/chat" for r in ollama.requests)
    assert client.responses.create(model="llama3.2", input="x" * 5000, store=False).output_text


# ---- Redis only ---------------------------------------------------------------------------


def test_redis_holds_a_hash_of_the_key_and_expires_entries(
    make_shim: ShimFactory, ollama: FakeOllama, redis_server: RedisServer
) -> None:
    url = make_shim(
        api_keys=("sk-redis-secret",), responses_store=redis_server.url(2), responses_ttl=3600
    )
    created = sdk(url, "sk-redis-secret").responses.create(model="llama3.2", input="Hi")
    db = redis.Redis(port=redis_server.port, db=2)
    try:
        [key] = [k for k in db.scan_iter() if created.id.encode() in k]
        assert tenant_of("sk-redis-secret").encode() in key
        for name in db.scan_iter():
            assert b"sk-redis-secret" not in name + (db.get(name) or b"")
        assert 3590 <= db.ttl(key) <= 3600
    finally:
        db.close()


def test_redis_down_is_a_503_for_what_needs_the_store_only(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    url = make_shim(responses_store=f"redis://127.0.0.1:{free_port()}/0")
    client = sdk(url, "k")
    for call in (
        lambda: client.responses.retrieve("resp_1"),
        lambda: client.responses.delete("resp_1"),
        lambda: client.responses.create(model="llama3.2", input="x"),
        lambda: client.responses.create(model="llama3.2", input="x", stream=True),
        lambda: client.responses.create(model="llama3.2", input="x", previous_response_id="r"),
    ):
        with pytest.raises(openai.InternalServerError) as info:
            call()
        assert info.value.status_code == 503
        assert info.value.code == "store_unavailable"
        assert "Redis" in info.value.message
    assert not any(r.path == "/api/chat" for r in ollama.requests)  # refused before generating
    assert client.responses.create(model="llama3.2", input="x", store=False).output_text
    chat = client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.choices[0].message.content


def test_redis_store_recovers_when_redis_comes_back(
    make_shim: ShimFactory, ollama: FakeOllama, redis_server: RedisServer, tmp_path: Path
) -> None:
    late = RedisServer(tmp_path, redis_server.binary)
    client = sdk(make_shim(responses_store=late.url()), "k")
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="llama3.2", input="x")
    late.start()
    try:
        created = client.responses.create(model="llama3.2", input="x")
        assert client.responses.retrieve(created.id).id == created.id
    finally:
        late.stop()


def test_redis_lost_mid_stream_ends_it_with_response_failed(
    make_shim: ShimFactory, ollama: FakeOllama, redis_server: RedisServer, tmp_path: Path
) -> None:
    lost = RedisServer(tmp_path, redis_server.binary)
    lost.start()
    try:
        client = sdk(make_shim(responses_store=lost.url()), "k")
        ollama.queue(Reply(chunk_delay=0.1))
        kinds, last = [], None
        with client.responses.create(model="llama3.2", input="Hi", stream=True) as events:
            for event in events:
                kinds.append(event.type)
                if event.type == "response.output_text.delta" and lost.proc:
                    lost.stop()
                    lost.proc = None
                last = event
    finally:
        lost.stop()
    assert "response.output_text.delta" in kinds
    assert "response.completed" not in kinds
    assert last is not None
    assert last.type == "response.failed"
    assert last.response.error is not None
    assert "Responses store (Redis) is unavailable" in last.response.error.message


# ---- the memory budget --------------------------------------------------------------------


def test_memory_budget_counts_what_is_held() -> None:
    async def scenario(store: ResponseStore) -> MemoryStore:
        assert isinstance(store, MemoryStore)
        for i in range(60):
            await store.put("", response(f"r{i}"), [{"role": "user", "content": "z" * 4000}])
            assert store.held_bytes <= store.max_bytes
        return store

    store = run(lambda **kw: MemoryStore(1000, 100_000, **kw), scenario)
    assert 15 <= len(store) < 60
    blobs = sum(len(blob) + ENTRY_OVERHEAD for blob, _ in store._entries.values())
    assert store.held_bytes == blobs
    assert run(lambda **kw: store, lambda s: s.get("", "r59")) is not None
    assert run(lambda **kw: store, lambda s: s.get("", "r0")) is None
    counted = run(lambda **kw: MemoryStore(2, **kw), lambda s: _fill(s, 3))
    assert len(counted) == 2


async def _fill(store: ResponseStore, n: int) -> ResponseStore:
    for i in range(n):
        await store.put("", response(f"r{i}"), [])
    return store


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def server_process(ollama: FakeOllama) -> Iterator[tuple[subprocess.Popen[str], str]]:
    assert SCRIPT
    env = {**os.environ, "OLLAMA_HOST": ollama.url}
    proc = subprocess.Popen(
        [SCRIPT, "--port", "0", "--responses-store", "100000", "--no-access-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("export OPENAI_BASE_URL=")
        yield proc, line.split("=", 1)[1]
    finally:
        proc.kill()
        proc.wait(5)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
@pytest.mark.timeout(180)
def test_memory_store_stays_within_its_budget_in_a_real_process(
    server_process: tuple[subprocess.Popen[str], str], ollama: FakeOllama
) -> None:
    """Many small input items cost far more as Python objects than as JSON; the store holds
    bytes, so 120 responses of 1 MB of JSON each stay within the 64 MiB budget."""
    proc, base_url = server_process
    items = [{"role": "user", "content": f"m{i}"} for i in range(19_000)]
    body = orjson.dumps({"model": "llama3.2", "input": items, "max_output_tokens": 5})
    assert len(body) > 500_000

    async def send(n: int) -> list[str]:
        ids = []
        async with aiohttp.ClientSession() as session:
            for _ in range(n):
                async with session.post(
                    f"{base_url}/responses",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as answer:
                    assert answer.status == 200, await answer.text()
                    ids.append((await answer.json())["id"])
        return ids

    asyncio.run(send(2))
    baseline = rss_bytes(proc.pid)
    ids = asyncio.run(send(120))
    grown = rss_bytes(proc.pid) - baseline
    budget = 64 * 1024 * 1024
    assert grown < budget + 48 * 1024 * 1024, f"RSS grew {grown / 2**20:.0f} MiB"

    async def status(rid: str) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base_url}/responses/{rid}") as answer,
        ):
            return answer.status

    assert asyncio.run(status(ids[0])) == 404  # the oldest were dropped to stay in budget
    assert asyncio.run(status(ids[-1])) == 200


# ---- settings -----------------------------------------------------------------------------


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    return settings_from(build_parser().parse_args(argv), env or {})


def test_store_settings_from_flags_and_environment() -> None:
    s = parse([])
    assert (s.responses_store, s.responses_ttl, s.responses_max_entry_bytes) == (
        256,
        30 * 24 * 3600,
        8 * 1024 * 1024,
    )
    assert parse(["--responses-store", "0"]).responses_store == 0
    assert parse(["--responses-store", "rediss://cache:6380/1"]).responses_store == (
        "rediss://cache:6380/1"
    )
    env = {
        "OAI2OLLAMA_RESPONSES_STORE": "redis://cache:6379/0",
        "OAI2OLLAMA_RESPONSES_TTL": "3600",
        "OAI2OLLAMA_RESPONSES_MAX_ENTRY_BYTES": "65536",
    }
    s = parse([], env)
    assert (s.responses_store, s.responses_ttl, s.responses_max_entry_bytes) == (
        "redis://cache:6379/0",
        3600,
        65536,
    )
    s = parse(["--responses-store", "16", "--responses-ttl", "0"], env)
    assert (s.responses_store, s.responses_ttl) == (16, 0)


@pytest.mark.parametrize("value", ["http://cache:6379", "-1", "many"])
def test_bad_store_flags(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--responses-store", value])
    assert info.value.code == 2
    assert "redis://" in capsys.readouterr().err


def test_bad_store_environment() -> None:
    with pytest.raises(SettingsError, match="OAI2OLLAMA_RESPONSES_TTL"):
        parse([], {"OAI2OLLAMA_RESPONSES_TTL": "a month"})


def test_redis_without_its_client_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a)
    )
    with pytest.raises(SettingsError, match=r"oai2ollama\[redis\]") as info:
        parse(["--responses-store", "redis://user:hunter2@cache:6379/0"])
    assert "hunter2" not in str(info.value)


def test_the_redis_address_in_the_log_has_no_credentials() -> None:
    assert redis_address("redis://user:hunter2@cache:6380/2") == "redis://cache:6380/2"
    assert redis_address("rediss://:pw@[::1]") == "rediss://[::1]:6379/0"
