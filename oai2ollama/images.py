"""Fetching ``http(s)`` image URLs for vision models — off unless the operator enables it.

A URL from a client must never become a way into the operator's network. Every address a
hostname resolves to is checked, on the first request and on every redirect, and the connection
is made only to an address that passed: private, loopback, link-local, multicast and reserved
addresses are refused, so DNS rebinding cannot slip past the check. IPv6 forms that carry an
IPv4 address (NAT64, 6to4, IPv4-compatible, -mapped and -translated) are judged by that address.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from .config import Settings
from .errors import InvalidRequest
from .translate.chat import ChatRequest, RemoteImage

MAX_REDIRECTS = 5
AddressPolicy = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]


# IPv6 ranges whose last 32 bits are an IPv4 address the packet ends up going to.
_LOW_32_EMBEDS = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix
)
# NAT64's local-use prefix: where the IPv4 address sits depends on the site's prefix length,
# and nothing in it is public by definition.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Only globally routable unicast addresses. An IPv6 address that carries an IPv4 address
    (mapped, compatible, translated, NAT64, 6to4) is judged by the IPv4 address inside."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local or ip in _LOCAL_NAT64 or ip.teredo is not None:
            return False
        inner = embedded_ipv4(ip)
        if inner is not None:
            return is_public(inner)
    return ip.is_global and not ip.is_multicast


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _LOW_32_EMBEDS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class BlockedAddress(OSError):
    """Raised by the resolver when a host has no address the policy allows."""


class GuardedResolver(AbstractResolver):
    """Resolves like the default resolver, then keeps only the addresses the policy allows."""

    def __init__(self, allow: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._allow = allow
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._allow(ipaddress.ip_address(r["host"]))]
        if not allowed:
            raise BlockedAddress(f"{host} resolves only to addresses that are not allowed")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class ImageFetcher:
    def __init__(
        self,
        settings: Settings,
        *,
        allow: AddressPolicy = is_public,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._allow = allow
        self._resolver = GuardedResolver(allow, resolver)
        self._max_bytes = settings.image_max_bytes
        self._timeout = aiohttp.ClientTimeout(total=settings.image_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=self._resolver, limit=32),
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": "oai2ollama image fetcher", "Accept": "image/*"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fill(self, request: ChatRequest) -> None:
        """Fetch every remote image of ``request`` at once and put its base64 into the payload.
        The first failure cancels the other fetches and is raised."""
        images = request.remote_images
        tasks = [asyncio.ensure_future(self.fetch(image)) for image in images]
        try:
            fetched = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        messages = request.payload["messages"]
        for image, data in zip(images, fetched, strict=True):
            messages[image.message]["images"][image.slot] = data

    async def fetch(self, image: RemoteImage) -> str:
        assert self._session is not None, "ImageFetcher used before start()"
        url = image.url
        try:
            for _ in range(MAX_REDIRECTS + 1):
                self._check_url(url, image)
                async with self._session.get(url, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    if resp.status != 200:
                        raise _failed(image, f"the server answered HTTP {resp.status}")
                    return base64.b64encode(await self._read(resp, image)).decode()
            raise _failed(image, f"more than {MAX_REDIRECTS} redirects")
        except InvalidRequest:
            raise
        except (aiohttp.ClientConnectorError, BlockedAddress) as exc:
            if isinstance(exc, BlockedAddress) or isinstance(
                getattr(exc, "os_error", None), BlockedAddress
            ):
                raise _blocked(image) from None
            raise _failed(image, "could not connect") from None
        except TimeoutError:
            raise _failed(image, "it took too long") from None
        except aiohttp.ClientError as exc:
            raise _failed(image, exc.__class__.__name__) from None

    def _check_url(self, url: str, image: RemoteImage) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _failed(image, "only http(s) URLs can be fetched")
        try:
            ip = ipaddress.ip_address(parts.hostname)
        except ValueError:
            return  # a name: the resolver checks every address it stands for
        if not self._allow(ip):
            raise _blocked(image)

    async def _read(self, resp: aiohttp.ClientResponse, image: RemoteImage) -> bytes:
        length = resp.content_length
        if length is not None and length > self._max_bytes:
            raise _too_big(image, self._max_bytes)
        data = bytearray()
        async for piece in resp.content.iter_chunked(64 * 1024):
            data += piece
            if len(data) > self._max_bytes:
                raise _too_big(image, self._max_bytes)
        if not data:
            raise _failed(image, "the image is empty")
        return bytes(data)


def _blocked(image: RemoteImage) -> InvalidRequest:
    return InvalidRequest(
        f"The image URL in '{image.param}' points to an address this server does not fetch "
        "from (private, loopback or link-local).",
        param=image.param,
        code="image_url_blocked",
    )


def _failed(image: RemoteImage, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"Could not fetch the image in '{image.param}': {why}.",
        param=image.param,
        code="image_fetch_failed",
    )


def _too_big(image: RemoteImage, limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"The image in '{image.param}' is larger than the limit of {limit} bytes.",
        param=image.param,
        code="image_too_large",
    )
