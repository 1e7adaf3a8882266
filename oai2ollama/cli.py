"""Command line: the settings (see :mod:`oai2ollama.settings`) → a running server."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import __version__
from .config import Settings, SettingsError
from .errors import APIError
from .logs import setup_logging
from .server import OLLAMA, bound_port, start
from .settings import build_parser, is_loopback, settings_from

__all__ = ["build_parser", "main", "settings_from"]


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    log = logging.getLogger("oai2ollama")
    runner = await start(settings)
    try:
        bound = dataclasses.replace(settings, port=bound_port(runner, settings.port))
        log.info(
            "oai2ollama %s listening on %s (Ollama's own API at %s), forwarding to Ollama at %s%s",
            __version__,
            bound.base_url,
            bound.base_url.removesuffix("/v1"),
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
        make_loop = loop_factory(settings.loop)
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
