"""Command line: flags and environment → :class:`Settings` → a running server."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from . import __version__
from .config import DEFAULT_HOST, DEFAULT_PORT, Settings, SettingsError, parse_ollama_url
from .server import bound_port, start

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ENV_HELP = """environment:
  OLLAMA_HOST           Ollama's address, in any form Ollama accepts (default 127.0.0.1:11434)
  OAI2OLLAMA_HOST       same as --host
  OAI2OLLAMA_PORT       same as --port
  OAI2OLLAMA_API_KEY    same as --api-key
  OAI2OLLAMA_LOG_LEVEL  same as --log-level
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
    add = parser.add_argument
    add("--version", action="version", version=f"oai2ollama {__version__}")
    add("--host", help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 exposes the shim)")
    add(
        "--port", type=_port, help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    add(
        "--ollama-url",
        help="Ollama's address: http://host:port, host:port or host "
        "(default: $OLLAMA_HOST, else http://127.0.0.1:11434)",
    )
    add(
        "--api-key",
        help="require this key from clients as 'Authorization: Bearer <key>' "
        "(default: $OAI2OLLAMA_API_KEY; none means any or no key is accepted)",
    )
    add("--log-level", type=str.lower, choices=LOG_LEVELS, help="log verbosity (default info)")
    add(
        "--connect-timeout",
        type=_seconds,
        default=5.0,
        help="seconds to wait for a connection to Ollama (default 5; 0 = no limit)",
    )
    add(
        "--read-timeout",
        type=_seconds,
        default=600.0,
        help="longest silence from Ollama, in seconds, before a request fails with 504; covers "
        "model loading (default 600; 0 = no limit)",
    )
    add(
        "--request-timeout",
        type=_seconds,
        default=0.0,
        help="limit on a whole upstream request in seconds (default 0 = no limit)",
    )
    add(
        "--max-body-size",
        type=_size,
        default=16 * 1024 * 1024,
        help="largest accepted request body in bytes (default 16777216)",
    )
    add(
        "--allow-image-urls",
        action="store_true",
        default=None,
        help="fetch http(s) image URLs for vision models (default off: clients must send data: "
        "URLs); private, loopback and link-local addresses are never fetched "
        "(env OAI2OLLAMA_ALLOW_IMAGE_URLS=1)",
    )
    add(
        "--image-max-bytes",
        type=_size,
        default=10 * 1024 * 1024,
        help="largest image fetched from a URL, in bytes (default 10485760)",
    )
    add(
        "--image-timeout",
        type=_seconds,
        default=10.0,
        help="time limit for fetching one image URL, in seconds (default 10)",
    )
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be zero or more: {text!r}")
    return value


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {text!r}") from None
    if value < 1024:
        raise argparse.ArgumentTypeError(f"too small (at least 1024 bytes): {value}")
    return value


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Flags first, then environment, then defaults. Raises SettingsError for unusable values."""

    def pick(flag: Any, name: str) -> Any:
        return flag if flag is not None else (env.get(name) or None)

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
    return Settings(
        host=pick(args.host, "OAI2OLLAMA_HOST") or DEFAULT_HOST,
        port=DEFAULT_PORT if port is None else port,
        ollama_url=ollama_url,
        api_key=pick(args.api_key, "OAI2OLLAMA_API_KEY"),
        log_level=level.lower(),
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        request_timeout=args.request_timeout or None,
        max_body_size=args.max_body_size,
        allow_image_urls=bool(
            args.allow_image_urls or _truthy(env.get("OAI2OLLAMA_ALLOW_IMAGE_URLS"))
        ),
        image_max_bytes=args.image_max_bytes,
        image_timeout=args.image_timeout or 10.0,
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM."""
    debug = settings.log_level == "debug"
    runner = await start(settings, logging.getLogger("oai2ollama.access") if debug else None)
    try:
        bound = dataclasses.replace(settings, port=bound_port(runner, settings.port))
        logging.getLogger("oai2ollama").info(
            "oai2ollama %s listening on %s, forwarding to Ollama at %s%s",
            __version__,
            bound.base_url,
            settings.ollama_url,
            " (API key required)" if settings.api_key else "",
        )
        print(f"export OPENAI_BASE_URL={bound.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args, os.environ if env is None else env)
    except SettingsError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(serve(settings))
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
