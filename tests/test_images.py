"""Remote images: the address policy, the count cap, fetching inside the limiter, and images
refused up front for a model that cannot see."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import time
from typing import Any

import aiohttp
import pytest

from oai2ollama.config import Settings
from oai2ollama.errors import InvalidRequest
from oai2ollama.images import ImageFetcher, is_public
from oai2ollama.translate import chat
from oai2ollama.translate.chat import RemoteImage

from .conftest import ShimFactory
from .fake_ollama import PNG, FakeOllama, Reply

# ---- address policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        # IPv4-compatible (deprecated, still routed by some stacks)
        "::169.254.169.254",
        "::a9fe:a9fe",
        "::7f00:1",
        "::10.0.0.1",
        # NAT64, well-known prefix: the gateway connects to the IPv4 address inside
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::127.0.0.1",
        "64:ff9b::192.168.0.1",
        # NAT64, local-use prefix: where the address sits depends on the local prefix length
        "64:ff9b:1::8.8.8.8",
        "64:ff9b:1:ffff::a9fe:a9fe",
        # 6to4
        "2002:a9fe:a9fe::1",
        "2002:7f00:1::",
        "2002:a00:1::1",
        # IPv4-translated (SIIT)
        "::ffff:0:a9fe:a9fe",
        "::ffff:0:7f00:1",
        # site-local (deprecated, but routed inside sites that still use it)
        "fec0::1",
        "feff::1",
        # Teredo
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        # multicast
        "ff02::1",
        "224.0.0.1",
    ],
)
def test_private_addresses_are_refused_however_they_are_written(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    ["http://[64:ff9b::a9fe:a9fe]/latest", "http://[::a9fe:a9fe]/x.png", "http://[fec0::1]/x.png"],
)
def test_the_fetcher_refuses_embedded_private_addresses_before_connecting(url: str) -> None:
    async def run() -> None:
        fetcher = ImageFetcher(Settings(image_timeout=5))
        await fetcher.start()
        try:
            await fetcher.fetch(RemoteImage(0, 0, url, "messages[0].content[0].image_url.url"))
        finally:
            await fetcher.close()

    with pytest.raises(InvalidRequest) as info:
        asyncio.run(run())
    assert info.value.code == "image_url_blocked"


# ---- fetching: concurrently, inside the limiter, at most so many ---------------------------


def image_message(*urls: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "What is in the pictures?"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return [{"role": "user", "content": parts}]


def fill(body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Fetch a chat request's images with a policy that lets loopback through."""

    async def run() -> tuple[dict[str, Any], float]:
        fetcher = ImageFetcher(Settings(), allow=lambda ip: ip.is_loopback)
        await fetcher.start()
        try:
            req = chat.parse_request(body, allow_image_urls=True)
            started = time.perf_counter()
            await fetcher.fill(req)
            return req.payload, time.perf_counter() - started
        finally:
            await fetcher.close()

    return asyncio.run(run())


def test_images_are_fetched_concurrently(image_server: str) -> None:
    urls = [f"{image_server}/wait.png?s=0.6&n={i}" for i in range(5)]
    payload, elapsed = fill({"model": "llava:7b", "messages": image_message(*urls)})
    assert [base64.b64decode(i) for i in payload["messages"][0]["images"]] == [PNG] * 5
    assert elapsed < 2.0, f"5 images of 0.6 s took {elapsed:.2f} s"


def test_one_failed_image_fails_the_request_without_waiting_for_the_others(
    image_server: str,
) -> None:
    urls = [f"{image_server}/wait.png?s=3", f"{image_server}/missing.png"]
    started = time.perf_counter()
    with pytest.raises(InvalidRequest) as info:
        fill({"model": "llava:7b", "messages": image_message(*urls)})
    assert info.value.code == "image_fetch_failed"
    assert info.value.param == "messages[0].content[2].image_url.url"
    assert time.perf_counter() - started < 2.5


@pytest.mark.parametrize("route", ["chat/completions", "responses"])
def test_more_image_urls_than_allowed_is_400_before_any_fetch(
    make_shim: ShimFactory, ollama: FakeOllama, route: str
) -> None:
    url = make_shim(allow_image_urls=True, max_image_urls=2)
    images = [f"http://images.invalid/{i}.png" for i in range(3)]
    if route == "responses":
        content = [{"type": "input_image", "image_url": u} for u in images]
        body: dict[str, Any] = {
            "model": "llava:7b",
            "input": [{"role": "user", "content": content}],
        }
    else:
        body = {"model": "llava:7b", "messages": image_message(*images)}
    status, answer = post(f"{url}/{route}", body)
    assert status == 400
    assert answer["error"]["code"] == "too_many_image_urls"
    assert "2" in answer["error"]["message"]
    assert "--max-image-urls" in answer["error"]["message"]
    assert ollama.requests == []
    # At the cap, the same request goes on (to fail on the address, which is not fetched).
    if route == "chat/completions":
        status, answer = post(f"{url}/{route}", {**body, "messages": image_message(*images[:2])})
        assert answer["error"]["code"] == "image_fetch_failed"


def test_image_fetches_wait_for_a_slot(
    make_shim: ShimFactory, ollama: FakeOllama, image_server: str
) -> None:
    """With every slot taken and no queue, a request with images is turned away (429) before
    anything is fetched, instead of fetching first and queueing after."""
    url = make_shim(allow_image_urls=True, max_concurrency=1, max_queue=0)
    ollama.queue(Reply(hang=True))

    async def run() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            holder = asyncio.ensure_future(
                session.post(
                    f"{url}/chat/completions",
                    json={"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]},
                )
            )
            for _ in range(200):
                if any(r.path == "/api/chat" for r in ollama.requests):
                    break
                await asyncio.sleep(0.01)
            body = {"model": "llava:7b", "messages": image_message("http://127.0.0.1:9/x.png")}
            async with session.post(f"{url}/chat/completions", json=body) as resp:
                answer = resp.status, await resp.json()
            holder.cancel()
            return answer

    status, answer = asyncio.run(run())
    assert status == 429, answer
    assert answer["error"]["code"] == "rate_limit_exceeded"


# ---- a model that cannot see ---------------------------------------------------------------


@pytest.mark.parametrize("route", ["chat/completions", "responses"])
def test_images_to_a_model_without_vision_are_400_naming_the_model(
    base_url: str, ollama: FakeOllama, route: str
) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    if route == "responses":
        content = [{"type": "input_text", "text": "what?"}]
        content.append({"type": "input_image", "image_url": data_url})
        body: dict[str, Any] = {
            "model": "llama3.2",
            "input": [{"role": "user", "content": content}],
        }
    else:
        body = {"model": "llama3.2", "messages": image_message(data_url)}
    status, answer = post(f"{base_url}/{route}", body)
    assert status == 400, answer
    error = answer["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "model_not_supported"
    assert error["param"] == "model"
    assert "image input" in error["message"]
    assert "'llama3.2'" in error["message"]
    assert not [r for r in ollama.requests if r.path == "/api/chat"]
    # A vision model takes the same request.
    status, answer = post(f"{base_url}/{route}", {**body, "model": "llava:7b"})
    assert status == 200, answer
    assert ollama.last().body["messages"][0]["images"] == [base64.b64encode(PNG).decode()]


def test_the_vision_check_names_the_alias_and_uses_the_cache(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    from oai2ollama.policy import policy_from

    url = make_shim(policy=policy_from({"aliases": {"gpt-4o": "llama3.2"}}, where="test"))
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    for _ in range(3):
        status, answer = post(
            f"{url}/chat/completions", {"model": "gpt-4o", "messages": image_message(data_url)}
        )
        assert status == 400
        assert "'gpt-4o'" in answer["error"]["message"]
        assert "llama3.2" in answer["error"]["message"]
    assert len([r for r in ollama.requests if r.path == "/api/show"]) <= 1


def post(url: str, body: Any) -> tuple[int, Any]:
    async def run() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
            return resp.status, await resp.json()

    return asyncio.run(run())
