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
from .policy import ConfigError, ModelPolicy, load_config, policy_from
from .server import bound_port, start

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ENV_HELP = """environment:
  OLLAMA_HOST           Ollama's address, in any form Ollama accepts (default 127.0.0.1:11434)
  OAI2OLLAMA_HOST       same as --host
  OAI2OLLAMA_PORT       same as --port
  OAI2OLLAMA_API_KEY    same as --api-key
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
    add(
        "--config",
        help="TOML file with aliases and per-model defaults (default: $OAI2OLLAMA_CONFIG)",
    )
    add(
        "--alias",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="answer NAME (a glob pattern such as 'gpt-4o*') with the local MODEL; repeatable, "
        "and these come before the config file's",
    )
    add("--default-model", help="local model for names that are neither aliases nor local models")
    add(
        "--num-ctx",
        type=_num_ctx,
        help="context length for every model unless configured per model: a number of tokens, "
        "or 'auto' for the model's trained length capped by --max-num-ctx",
    )
    add("--max-num-ctx", type=int, help="cap for --num-ctx auto (default 32768)")
    add("--keep-alive", help="how long Ollama keeps a model loaded: '30m', '-1' (forever), …")
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
    return Settings(
        policy=model_policy,
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
