"""The record of one request, kept for the access log, the metrics and shutdown, and the
context that puts a request's id and client in every log line about it."""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import weakref
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(slots=True, eq=False)
class Exchange:
    """What the middlewares and handlers learn about a request as it is answered."""

    started: float
    request_id: str
    task: asyncio.Task[Any] | None = None
    client: str | None = None  # the client's address, once someone asked for it
    model: str | None = None  # the name the client sent
    target: str | None = None  # the local model that answered it, after aliases
    usage: dict[str, int] | None = None
    stream: bool = False  # an SSE answer was started
    status: int | None = None  # what the client got, when not the response's status
    error: str | None = None  # the code of the error the client got
    stopping: bool = False  # cancelled by shutdown: answer 503
    tenant: str = ""  # the hash of the API key that matched ("" without keys): owns stored data


_request_key = getattr(web, "RequestKey", None)  # aiohttp ≥ 3.13; a plain key before

EXCHANGE: Any = _request_key("exchange", Exchange) if _request_key else "oai2ollama.exchange"

# The request being handled by the current task, for log lines about it. A weak reference: the
# context is copied into every callback scheduled while the request runs (the connection pool's
# timers among them), which may outlive the request by a minute and must not keep its body.
CURRENT: contextvars.ContextVar[weakref.ref[web.Request] | None] = contextvars.ContextVar(
    "oai2ollama_request", default=None
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The proxies whose X-Forwarded-For is believed (--trusted-proxy).
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple)


class RequestContext(logging.Filter):
    """Adds ``request_id`` and ``client`` to records logged while a request is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        ref = CURRENT.get()
        request = ref() if ref is not None else None
        if request is not None and not hasattr(record, "request_id"):
            exchange = request.get(EXCHANGE)
            if exchange is not None:
                record.request_id = exchange.request_id
                record.client = client_address(request, exchange)
        return True


def client_address(request: web.Request, exchange: Exchange) -> str | None:
    """The client's address: the peer's, or with a trusted proxy as the peer, the nearest
    address in X-Forwarded-For that is not a trusted proxy. Worked out once, when first asked."""
    if exchange.client is None:
        peer = request.remote
        trusted = request.app.get(TRUSTED_PROXIES) or ()
        forwarded = request.headers.get("X-Forwarded-For") if trusted else None
        exchange.client = forwarded_client(peer, forwarded, trusted) if forwarded else peer
    return exchange.client


def forwarded_client(peer: str | None, forwarded: str, trusted: tuple[Network, ...]) -> str | None:
    client = peer
    hops = [hop.strip() for hop in forwarded.split(",")]
    while client is not None and _is_trusted(client, trusted) and hops:
        hop = hops.pop()
        try:
            client = str(ipaddress.ip_address(hop.removeprefix("[").partition("]")[0]))
        except ValueError:
            break  # not an address: believe nothing further along
    return client


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def parse_networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """Addresses and CIDR blocks; raises ValueError naming a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR block: {value!r}") from None
    return tuple(networks)


CONTEXT = RequestContext()
for _name in ("oai2ollama", "oai2ollama.access"):
    logging.getLogger(_name).addFilter(CONTEXT)
