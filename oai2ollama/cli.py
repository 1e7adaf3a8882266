"""Command line: flags and environment → :class:`Settings` → a running server."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .config import (
    DEFAULT_HOST,
    DEFAULT_MAX_IMAGE_URLS,
    DEFAULT_MAX_LINE_SIZE,
    DEFAULT_PORT,
    Settings,
    SettingsError,
    parse_ollama_url,
)
from .errors import APIError
from .logs import setup_logging
from .policy import ConfigError, ModelPolicy, load_config, policy_from
from .server import OLLAMA, bound_port, start

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ENV_HELP = """environment:
  OLLAMA_HOST           Ollama's address, in any form Ollama accepts (default 127.0.0.1:11434)
  OAI2OLLAMA_HOST       same as --host
  OAI2OLLAMA_PORT       same as --port
  OAI2OLLAMA_API_KEY    same as --api-key (several: comma-separated)
  OAI2OLLAMA_LOG_LEVEL  same as --log-level
  OAI2OLLAMA_CONFIG     same as --config
Flags win over the environment.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="oai2ollama",
        description="Serve the OpenAI API (/v1) from a local Ollama server.",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"oai2ollama {__version__}")

    group = parser.add_argument_group("server")
    add = group.add_argument
    add("--host", help=f"address to listen on (default {DEFAULT_HOST}; see --api-key)")
    add("--port", type=_port, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    add(
        "--max-body-size",
        type=_size,
        default=16 * 1024 * 1024,
        help="largest request body in bytes; larger ones get 413 (default 16777216)",
    )
    add(
        "--max-concurrency",
        type=_count,
        default=0,
        help="generation requests sent to Ollama at once; 0 = no limit (default)",
    )
    add(
        "--max-queue",
        type=_count,
        default=64,
        help="requests that may wait for a slot when "
        "--max-concurrency is reached; beyond, 429 with Retry-After (default 64)",
    )
    add(
        "--shutdown-grace",
        type=_seconds,
        default=10.0,
        help="on SIGTERM/SIGINT, seconds that "
        "requests in flight get to finish before open streams end with an error (default 10)",
    )

    add(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop if installed (pip install 'oai2ollama[speed]'), else asyncio "
        "(default auto)",
    )
    add(
        "--responses-store",
        type=_count,
        default=256,
        help="Responses API answers kept in memory for previous_response_id and "
        "GET /v1/responses/{id} (default 256, newest first, 64 MiB at most; 0 = stateless)",
    )

    group = parser.add_argument_group("Ollama")
    add = group.add_argument
    add(
        "--ollama-url",
        help="Ollama's address: http://host:port, host:port or host "
        "(default: $OLLAMA_HOST, else http://127.0.0.1:11434)",
    )
    add(
        "--connect-timeout",
        type=_seconds,
        default=5.0,
        help="seconds to wait for a connection to Ollama (default 5; 0 = no limit)",
    )
    add(
        "--first-byte-timeout",
        type=_seconds,
        default=600.0,
        help="seconds Ollama may take to "
        "start answering: loading the model and reading the prompt (default 600; 0 = no limit)",
    )
    add(
        "--idle-timeout",
        type=_seconds,
        default=120.0,
        help="longest silence between two chunks of a stream (default 120; 0 = no limit)",
    )
    add(
        "--request-timeout",
        type=_seconds,
        default=0.0,
        help="limit on a whole upstream request (default 0 = no limit)",
    )
    add(
        "--keepalive-interval",
        type=_seconds,
        default=5.0,
        help="while Ollama is silent, send "
        "an SSE comment this often so clients and proxies wait (default 5; 0 = off)",
    )

    group = parser.add_argument_group("security")
    add = group.add_argument
    add(
        "--api-key",
        action="append",
        default=[],
        help="accept this key as 'Authorization: "
        "Bearer <key>'; repeatable (also $OAI2OLLAMA_API_KEY, comma-separated); without any, "
        "every request is accepted",
    )
    add("--api-key-file", help="file with one accepted key per line")
    add(
        "--allow-unauthenticated",
        action="store_true",
        help="listen on a non-loopback address without an API key (refused otherwise)",
    )
    add(
        "--max-line-size",
        type=_size,
        help="longest line of Ollama's NDJSON answer in bytes; a longer one ends the answer "
        "with an error (default 16777216; env OAI2OLLAMA_MAX_LINE_SIZE)",
    )
    add(
        "--cors-origin",
        action="append",
        default=[],
        metavar="PATTERN",
        help="allow browser "
        "pages from this origin (glob, e.g. 'chrome-extension://*'); repeatable; off by default",
    )

    group = parser.add_argument_group("models")
    add = group.add_argument
    add(
        "--config",
        help="TOML file with aliases and per-model defaults (default: $OAI2OLLAMA_CONFIG)",
    )
    add(
        "--alias",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="answer NAME "
        "(a glob pattern such as 'gpt-4o*') with the local MODEL; repeatable, and these come "
        "before the config file's",
    )
    add("--default-model", help="local model for names that are neither aliases nor local models")
    add(
        "--num-ctx",
        type=_num_ctx,
        help="context length for every model unless configured per "
        "model: a number of tokens, or 'auto' for the model's trained length capped by "
        "--max-num-ctx",
    )
    add("--max-num-ctx", type=int, help="cap for --num-ctx auto (default 32768)")
    add("--keep-alive", help="how long Ollama keeps a model loaded: '30m', '-1' (forever), …")

    group = parser.add_argument_group("images")
    add = group.add_argument
    add(
        "--allow-image-urls",
        action="store_true",
        default=None,
        help="fetch http(s) image URLs "
        "for vision models (default off: clients must send data: URLs); private, loopback and "
        "link-local addresses are never fetched (env OAI2OLLAMA_ALLOW_IMAGE_URLS=1)",
    )
    add(
        "--image-max-bytes",
        type=_size,
        default=10 * 1024 * 1024,
        help="largest image fetched from a URL, in bytes (default 10485760)",
    )
    add(
        "--max-image-urls",
        type=_count,
        help="most image URLs fetched for one request; more get 400 (default 16; env "
        "OAI2OLLAMA_MAX_IMAGE_URLS)",
    )
    add(
        "--image-timeout",
        type=_seconds,
        default=10.0,
        help="time limit for fetching one image URL, in seconds (default 10)",
    )

    group = parser.add_argument_group("logging")
    add = group.add_argument
    add("--log-level", type=str.lower, choices=LOG_LEVELS, help="log verbosity (default info)")
    add(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (default) or one JSON object each",
    )
    add("--no-access-log", action="store_true", help="no line per request")
    add("--log-bodies", action="store_true", help="log request bodies (prompts!) at debug level")
    return parser


def policy_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> ModelPolicy:
    """The config file (if any), with the flags on top."""
    path = args.config or env.get("OAI2OLLAMA_CONFIG")
    data = load_config(path) if path else {}
    flags: dict[str, Any] = {}
    if args.num_ctx is not None:
        flags["num_ctx"] = args.num_ctx
    if args.keep_alive is not None:
        flags["keep_alive"] = _keep_alive(args.keep_alive)
    defaults = (
        {**data.get("defaults", {}), **flags}
        if isinstance(data.get("defaults", {}), dict)
        else data["defaults"]
    )
    aliases: dict[str, str] = {}
    for item in args.alias:
        name, sep, model = item.partition("=")
        if not sep or not name.strip() or not model.strip():
            raise ConfigError(f"--alias {item!r}: expected NAME=MODEL")
        aliases[name.strip()] = model.strip()
    file_aliases = data.get("aliases", {})
    if isinstance(file_aliases, dict):
        aliases.update({k: v for k, v in file_aliases.items() if k not in aliases})
    else:
        aliases = file_aliases
    merged = {**data, "defaults": defaults, "aliases": aliases}
    if args.default_model:
        merged["default_model"] = args.default_model
    if args.max_num_ctx is not None:
        merged["max_num_ctx"] = args.max_num_ctx
    return policy_from(merged, where=str(path) if path else "flags")


def _keep_alive(text: str) -> str | int:
    """Ollama takes seconds as a number and durations as strings."""
    try:
        return int(text)
    except ValueError:
        return text


def _whole(text: str, what: str, lo: int, hi: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if value < lo or (hi is not None and value > hi):
        bounds = f"{lo} to {hi}" if hi is not None else f"at least {lo}"
        raise argparse.ArgumentTypeError(f"out of range ({bounds}): {value}")
    return value


def _port(text: str) -> int:
    return _whole(text, "a port number", 0, 65535)


def _count(text: str) -> int:
    return _whole(text, "a whole number", 0)


def _size(text: str) -> int:
    return _whole(text, "a number of bytes", 1024)


def _num_ctx(text: str) -> int | str:
    return text if text == "auto" else _whole(text, "a number of tokens or 'auto'", 1)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be zero or more: {text!r}")
    return value


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Flags first, then environment, then defaults. Raises SettingsError for unusable values."""

    def pick(flag: Any, name: str) -> Any:
        return flag if flag is not None else (env.get(name) or None)

    def number(flag: Any, name: str, parse: Callable[[str], int], default: int) -> int:
        if flag is not None:
            return int(flag)
        if env.get(name):
            try:
                return parse(env[name])
            except argparse.ArgumentTypeError as exc:
                raise SettingsError(f"{name}: {exc}") from None
        return default

    port = args.port
    if port is None and env.get("OAI2OLLAMA_PORT"):
        try:
            port = _port(env["OAI2OLLAMA_PORT"])
        except argparse.ArgumentTypeError as exc:
            raise SettingsError(f"OAI2OLLAMA_PORT: {exc}") from None
    level = pick(args.log_level, "OAI2OLLAMA_LOG_LEVEL") or "info"
    if level.lower() not in LOG_LEVELS:
        raise SettingsError(f"OAI2OLLAMA_LOG_LEVEL: unknown level {level!r}")
    source = "--ollama-url" if args.ollama_url else "OLLAMA_HOST"
    try:
        ollama_url = parse_ollama_url(pick(args.ollama_url, "OLLAMA_HOST"))
    except SettingsError as exc:
        raise SettingsError(f"{source}: {exc}") from None
    try:
        model_policy = policy_from_args(args, env)
    except ConfigError as exc:
        raise SettingsError(str(exc)) from None
    host = pick(args.host, "OAI2OLLAMA_HOST") or DEFAULT_HOST
    keys = api_keys(args, env)
    if not keys and not args.allow_unauthenticated and not is_loopback(host):
        raise SettingsError(
            f"--host {host} would let anyone on the network use Ollama through this server; "
            "set --api-key (or --api-key-file), or pass --allow-unauthenticated"
        )
    return Settings(
        policy=model_policy,
        host=host,
        port=DEFAULT_PORT if port is None else port,
        ollama_url=ollama_url,
        api_keys=keys,
        allow_unauthenticated=args.allow_unauthenticated,
        log_level=level.lower(),
        log_format=args.log_format,
        access_log=not args.no_access_log,
        log_bodies=args.log_bodies,
        connect_timeout=args.connect_timeout,
        first_byte_timeout=args.first_byte_timeout,
        idle_timeout=args.idle_timeout,
        request_timeout=args.request_timeout or None,
        keepalive_interval=args.keepalive_interval,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        shutdown_grace=args.shutdown_grace,
        cors_origins=tuple(args.cors_origin),
        responses_store=args.responses_store,
        max_body_size=args.max_body_size,
        max_line_size=number(
            args.max_line_size, "OAI2OLLAMA_MAX_LINE_SIZE", _size, DEFAULT_MAX_LINE_SIZE
        ),
        max_image_urls=number(
            args.max_image_urls, "OAI2OLLAMA_MAX_IMAGE_URLS", _count, DEFAULT_MAX_IMAGE_URLS
        ),
        allow_image_urls=bool(
            args.allow_image_urls or _truthy(env.get("OAI2OLLAMA_ALLOW_IMAGE_URLS"))
        ),
        image_max_bytes=args.image_max_bytes,
        image_timeout=args.image_timeout or 10.0,
    )


def api_keys(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, ...]:
    """Keys from the flags, else the environment (comma-separated), plus the key file."""
    keys = [k.strip() for k in args.api_key if k.strip()]
    if not keys:
        keys = [k.strip() for k in env.get("OAI2OLLAMA_API_KEY", "").split(",") if k.strip()]
    if args.api_key_file:
        try:
            text = Path(args.api_key_file).read_text()
        except OSError as exc:
            raise SettingsError(f"--api-key-file {args.api_key_file!r}: {exc.strerror}") from None
        found = [line.strip() for line in text.splitlines()]
        keys += [k for k in found if k and not k.startswith("#")]
        if not keys:
            raise SettingsError(f"--api-key-file {args.api_key_file!r} holds no key")
    return tuple(dict.fromkeys(keys))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    log = logging.getLogger("oai2ollama")
    runner = await start(settings)
    try:
        bound = dataclasses.replace(settings, port=bound_port(runner, settings.port))
        log.info(
            "oai2ollama %s listening on %s, forwarding to Ollama at %s%s",
            __version__,
            bound.base_url,
            settings.ollama_url,
            " (API key required)" if settings.api_keys else "",
        )
        if (
            settings.allow_unauthenticated
            and not is_loopback(settings.host)
            and not settings.api_keys
        ):
            log.warning(
                "listening on %s without an API key: anyone who can reach it can use Ollama",
                settings.host,
            )
        print(f"export OPENAI_BASE_URL={bound.base_url}", flush=True)
        await check_ollama(runner, settings, log)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down: in-flight requests get up to %gs", settings.shutdown_grace)
    finally:
        await runner.cleanup()


async def check_ollama(runner: Any, settings: Settings, log: logging.Logger) -> None:
    """Say once what was found upstream; the server runs either way and recovers later."""
    ollama = runner.app[OLLAMA]
    try:
        version = await ollama.get("/api/version", limit=(settings.connect_timeout or 5) + 5)
        tags = await ollama.get("/api/tags", limit=(settings.connect_timeout or 5) + 5)
    except APIError as err:
        log.warning("Ollama is not reachable yet: %s", err.message)
        return
    count = len(tags.get("models") or []) if isinstance(tags, dict) else 0
    found = version.get("version", "?") if isinstance(version, dict) else "?"
    log.info("connected to Ollama %s at %s, %d models", found, settings.ollama_url, count)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for or (``auto``) when installed; else asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SettingsError("--loop uvloop: uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args, os.environ if env is None else env)
        make_loop = loop_factory(args.loop)
    except SettingsError as exc:
        parser.error(str(exc))
    setup_logging(settings.log_level, settings.log_format)
    try:
        with asyncio.Runner(loop_factory=make_loop) as runner:
            runner.run(serve(settings))
    except OSError as exc:
        print(
            f"oai2ollama: error: cannot listen on {settings.host}:{settings.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        pass
    return 0
