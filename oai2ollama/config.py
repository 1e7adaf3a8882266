"""The runtime settings: one frozen object, built once at start-up, passed down explicitly.

Each field is declared (flag, environment variable, config file key, parser, help) in
:mod:`oai2ollama.settings`, which builds this object; a new field goes there too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .policy import ModelPolicy

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11435
DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
DEFAULT_OLLAMA_PORT = 11434
DEFAULT_MAX_LINE_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_IMAGE_URLS = 16


class SettingsError(ValueError):
    """A setting that cannot be used; the CLI reports it in one line and exits with status 2."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    ollama_url: str = DEFAULT_OLLAMA_URL
    api_keys: tuple[str, ...] = ()  # any of these is accepted; none means no key is asked for
    allow_unauthenticated: bool = False  # listen beyond loopback without a key
    log_level: str = "info"
    log_format: str = "text"  # or "json"
    access_log: bool = True
    log_bodies: bool = False  # request bodies (prompts) in the debug log
    # Upstream timeouts in seconds; 0 or None disables one.
    connect_timeout: float = 5.0
    first_byte_timeout: float = 600.0  # covers loading the model and reading the prompt
    idle_timeout: float = 120.0  # longest gap between two chunks of a stream
    request_timeout: float | None = None
    keepalive_interval: float = 5.0  # SSE comment while Ollama is silent; 0 turns it off
    # Backpressure: concurrent generation requests (0 = no limit), and how many may wait.
    max_concurrency: int = 0
    max_queue: int = 64
    shutdown_grace: float = 10.0
    loop: str = "auto"  # event loop: "auto", "asyncio" or "uvloop"
    cors_origins: tuple[str, ...] = ()  # glob patterns of browser origins allowed
    # The Responses store: a count kept in memory (0 = none, stateless), or a redis(s):// URL.
    responses_store: int | str = 256
    responses_ttl: int = 30 * 24 * 3600  # seconds a stored response is kept; 0 = no expiry
    responses_max_entry_bytes: int = 8 * 1024 * 1024  # one stored response with its conversation
    # With keys: Ollama's discovery routes (/api/version, /api/tags, /api/show, /) need none.
    open_discovery: bool = False
    # Ollama's model management routes (/api/pull, /api/delete, …) pass through; else 403.
    allow_model_management: bool = False
    refuse_hosted_tools: bool = False  # 400 for hosted tools (web_search, …) instead of dropping
    max_body_size: int = 16 * 1024 * 1024
    # One NDJSON line from Ollama; a longer one ends the answer with an error.
    max_line_size: int = DEFAULT_MAX_LINE_SIZE
    # Fetching http(s) image URLs for vision models: off unless enabled.
    allow_image_urls: bool = False
    image_max_bytes: int = 10 * 1024 * 1024
    max_image_urls: int = DEFAULT_MAX_IMAGE_URLS  # image URLs fetched for one request; more get 400
    image_timeout: float = 10.0
    # Aliases and per-model defaults, from the config file and flags.
    policy: ModelPolicy = field(default_factory=ModelPolicy, hash=False)

    @property
    def base_url(self) -> str:
        """The URL a client on this machine should use, for the start-up message."""
        host = self.host
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return f"http://{host}:{self.port}/v1"
        if ip.is_unspecified:
            host = "127.0.0.1" if ip.version == 4 else "[::1]"
        elif ip.version == 6:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"


def _split_hostport(hostport: str, value: str | None) -> tuple[str, int | None]:
    try:
        # A bare IPv6 address has colons but no port: "::1".
        return str(ipaddress.IPv6Address(hostport)), None
    except ValueError:
        pass
    try:
        parts = urlsplit(f"//{hostport}")
        return parts.hostname or "", parts.port
    except ValueError as exc:
        raise SettingsError(f"Ollama URL {value!r}: {exc}") from None


def parse_ollama_url(value: str | None) -> str:
    """Read an Ollama address the way Ollama reads ``OLLAMA_HOST``.

    Accepts ``host``, ``host:port``, ``:port``, ``[v6]:port`` and ``scheme://host[:port][/path]``.
    A bare host gets port 11434, an explicit ``http://`` or ``https://`` without a port gets 80 or
    443, as in Ollama. An unspecified bind address (``0.0.0.0``, ``::``) is where a server
    listens, not where a client connects, so it becomes loopback.
    """
    text = (value or "").strip()
    if not text:
        return DEFAULT_OLLAMA_URL
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise SettingsError(f"Ollama URL {value!r}: scheme must be http or https")
        default_port = 443 if scheme == "https" else 80
    else:
        scheme, rest, default_port = "http", text, DEFAULT_OLLAMA_PORT
    hostport, _, path = rest.partition("/")
    host, port = _split_hostport(hostport, value)
    if port is None:
        port = default_port
    if not host:
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if ip.is_unspecified:
            host = "127.0.0.1" if ip.version == 4 else "::1"
            ip = ipaddress.ip_address(host)
        if ip.version == 6:
            host = f"[{host}]"
    path = path.strip("/")
    return f"{scheme}://{host}:{port}" + (f"/{path}" if path else "")
