"""Remote images: the address policy, the count cap, fetching inside the limiter, and images
refused up front for a model that cannot see."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from oai2ollama.config import Settings
from oai2ollama.errors import InvalidRequest
from oai2ollama.images import ImageFetcher, is_public
from oai2ollama.translate.chat import RemoteImage

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
