"""The Responses store, for ``previous_response_id`` and ``GET``/``DELETE /v1/responses/{id}``.

One interface, two places to keep the entries:

- :class:`MemoryStore` (the default): this process only, lost on restart. It keeps the newest
  responses up to a count and a byte budget, and the budget counts what it really holds: each
  entry is kept as one compact JSON blob and parsed again when read.
- :class:`RedisStore` (``--responses-store redis://…``): shared by every replica that points at
  the same Redis (or Valkey), kept across restarts, expired by Redis after the TTL.

Every entry belongs to a tenant: a hash of the API key that created it (never the key), or
``""`` when the server asks for no key. Another tenant's entry is simply not found.
``--responses-store 0`` turns the store off and makes the server stateless.
"""

from __future__ import annotations

import hashlib
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from .errors import InvalidRequest, StoreUnavailable

log = logging.getLogger("oai2ollama")

DEFAULT_TTL = 30 * 24 * 3600  # as long as OpenAI keeps responses
DEFAULT_MAX_ENTRY = 8 * 1024 * 1024
MEMORY_BUDGET = 64 * 1024 * 1024
ENTRY_OVERHEAD = 256  # bytes a memory entry costs besides its blob: key, bookkeeping

REDIS_SCHEMES = ("redis", "rediss")


def tenant_of(key: str) -> str:
    """The tenant of an API key: a hash that names the key's entries without revealing it."""
    return hashlib.sha256(b"oai2ollama-tenant:" + key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Stored:
    response: dict[str, Any]  # the response object as it was answered
    items: list[dict[str, Any]]  # the conversation up to and including this response's output


class EntryTooLarge(InvalidRequest):
    code = "response_too_large"


def encode(response: dict[str, Any], items: list[dict[str, Any]]) -> bytes:
    blob = orjson.dumps({"response": response, "items": items})
    # Kept as a copy of exactly its size: the serialiser's buffer grows and is then shrunk in
    # place, and holding many of those leaves holes in the heap that count in the process's
    # memory but not in the budget.
    return bytes(memoryview(blob))


def decode(blob: bytes) -> Stored:
    entry = orjson.loads(blob)
    return Stored(entry["response"], entry["items"])


class ResponseStore(ABC):
    """Where stored responses live. Every method may raise :class:`StoreUnavailable` (503)."""

    def __init__(self, *, ttl: float = DEFAULT_TTL, max_entry: int = DEFAULT_MAX_ENTRY) -> None:
        self.ttl = ttl  # seconds an entry is kept; 0 = until evicted or deleted
        self.max_entry = max_entry  # bytes of one entry (its JSON)

    @property
    def enabled(self) -> bool:
        return True

    def describe(self) -> str:
        return type(self).__name__

    def check_size(self, items: list[dict[str, Any]]) -> None:
        """Refuse, before generating, a conversation the store could not keep."""
        size = len(orjson.dumps(items))
        if size > self.max_entry:
            raise self._too_large(size)

    def _too_large(self, size: int) -> EntryTooLarge:
        return EntryTooLarge(
            f"The conversation to store is {size} bytes, over the store's limit of "
            f"{self.max_entry} bytes per response (--responses-max-entry-bytes). Send "
            "'store': false with the whole conversation as 'input' instead.",
            param="store",
        )

    def _blob(self, response: dict[str, Any], input_items: list[dict[str, Any]]) -> bytes:
        blob = encode(response, input_items + list(response.get("output") or []))
        if len(blob) > self.max_entry:
            raise self._too_large(len(blob))
        return blob

    async def start(self) -> None:
        """Called once the server runs: check the store and say where it is."""
        return None

    async def close(self) -> None:
        """Called when the server stops."""
        return None

    async def ready(self) -> None:
        """Raise :class:`StoreUnavailable` unless entries can be written now."""
        return None

    @abstractmethod
    async def put(
        self, tenant: str, response: dict[str, Any], input_items: list[dict[str, Any]]
    ) -> None:
        """Keep ``response`` and the conversation that led to it; 400 if it is too large."""

    @abstractmethod
    async def get(self, tenant: str, response_id: str) -> Stored | None:
        """The tenant's entry, or None (unknown, expired, evicted or another tenant's)."""

    @abstractmethod
    async def delete(self, tenant: str, response_id: str) -> bool:
        """Whether the tenant had such an entry (now gone)."""


class MemoryStore(ResponseStore):
    """The newest entries of this process, within ``max_count`` and ``max_bytes``."""

    def __init__(
        self,
        max_count: int,
        max_bytes: int = MEMORY_BUDGET,
        *,
        ttl: float = DEFAULT_TTL,
        max_entry: int = DEFAULT_MAX_ENTRY,
    ) -> None:
        super().__init__(ttl=ttl, max_entry=min(max_entry, max_bytes - ENTRY_OVERHEAD))
        self.max_count = max_count
        self.max_bytes = max_bytes
        # (tenant, id) → (blob, expiry on the monotonic clock or None); least recently used first
        self._entries: OrderedDict[tuple[str, str], tuple[bytes, float | None]] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_count > 0

    @property
    def held_bytes(self) -> int:
        """What the entries cost, as the budget counts it."""
        return self._bytes

    def describe(self) -> str:
        if not self.enabled:
            return "off (stateless)"
        return f"in memory, {self.max_count} responses and {self.max_bytes} bytes at most"

    def __len__(self) -> int:
        return len(self._entries)

    async def put(
        self, tenant: str, response: dict[str, Any], input_items: list[dict[str, Any]]
    ) -> None:
        if not self.enabled:
            return
        blob = self._blob(response, input_items)
        key = (tenant, response["id"])
        self._drop(key)
        expires = time.monotonic() + self.ttl if self.ttl else None
        self._entries[key] = (blob, expires)
        self._bytes += len(blob) + ENTRY_OVERHEAD
        while len(self._entries) > self.max_count or self._bytes > self.max_bytes:
            _, (oldest, _) = self._entries.popitem(last=False)
            self._bytes -= len(oldest) + ENTRY_OVERHEAD

    async def get(self, tenant: str, response_id: str) -> Stored | None:
        key = (tenant, response_id)
        entry = self._entries.get(key)
        if entry is None:
            return None
        blob, expires = entry
        if expires is not None and time.monotonic() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return decode(blob)

    async def delete(self, tenant: str, response_id: str) -> bool:
        key = (tenant, response_id)
        entry = self._entries.get(key)
        if entry is None:
            return False
        self._drop(key)
        expires = entry[1]
        return expires is None or time.monotonic() < expires

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[0]) + ENTRY_OVERHEAD


class RedisStore(ResponseStore):
    """Entries in Redis (or Valkey), one string per response under a key that names its tenant,
    written with the TTL."""

    PREFIX = "oai2ollama:response:"

    def __init__(
        self,
        url: str,
        *,
        ttl: float = DEFAULT_TTL,
        max_entry: int = DEFAULT_MAX_ENTRY,
        connect_timeout: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(ttl=ttl, max_entry=max_entry)
        import redis.asyncio as aioredis  # the optional extra: oai2ollama[redis]
        from redis.exceptions import RedisError

        self._failures: tuple[type[BaseException], ...] = (RedisError, OSError)
        self.where = redis_address(url)
        self._client = aioredis.from_url(
            url, socket_connect_timeout=connect_timeout, socket_timeout=timeout
        )

    def describe(self) -> str:
        kept = f"{self.ttl:g} s" if self.ttl else "until deleted"
        return f"Redis at {self.where}, entries kept {kept}"

    def _key(self, tenant: str, response_id: str) -> str:
        return f"{self.PREFIX}{tenant or '-'}:{response_id}"

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        log.warning("Responses store (Redis at %s) failed: %s", self.where, exc)
        return StoreUnavailable(
            f"The Responses store (Redis) is unavailable ({type(exc).__name__}); retry later, "
            "or send 'store': false with the whole conversation as 'input'."
        )

    async def start(self) -> None:
        try:
            await self._client.ping()
        except self._failures as exc:
            log.warning(
                "Responses store: Redis at %s does not answer (%s); requests that need it get "
                "503 until it does",
                self.where,
                exc,
            )
        else:
            log.info("Responses store: Redis at %s", self.where)

    async def close(self) -> None:
        await self._client.aclose()

    async def ready(self) -> None:
        try:
            await self._client.ping()
        except self._failures as exc:
            raise self._unavailable(exc) from None

    async def put(
        self, tenant: str, response: dict[str, Any], input_items: list[dict[str, Any]]
    ) -> None:
        blob = self._blob(response, input_items)
        key = self._key(tenant, response["id"])
        try:
            await self._client.set(key, blob, ex=int(self.ttl) or None)
        except self._failures as exc:
            raise self._unavailable(exc) from None

    async def get(self, tenant: str, response_id: str) -> Stored | None:
        try:
            blob = await self._client.get(self._key(tenant, response_id))
        except self._failures as exc:
            raise self._unavailable(exc) from None
        return None if blob is None else decode(blob)

    async def delete(self, tenant: str, response_id: str) -> bool:
        try:
            return bool(await self._client.delete(self._key(tenant, response_id)))
        except self._failures as exc:
            raise self._unavailable(exc) from None


def is_redis_url(value: str) -> bool:
    return value.partition("://")[0].lower() in REDIS_SCHEMES and "://" in value


def redis_address(url: str) -> str:
    """``scheme://host:port/db`` of a Redis URL, without its credentials: fit for the log."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'}"


def open_store(
    setting: int | str, *, ttl: float = DEFAULT_TTL, max_entry: int = DEFAULT_MAX_ENTRY
) -> ResponseStore:
    """The store ``--responses-store`` names: a Redis URL, or a count kept in memory."""
    if isinstance(setting, str):
        return RedisStore(setting, ttl=ttl, max_entry=max_entry)
    return MemoryStore(setting, ttl=ttl, max_entry=max_entry)
