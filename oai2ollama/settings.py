"""Runtime settings, declared once: flags, environment, the config file's ``[server]`` table.

Every setting is one :class:`Setting` in :data:`SETTINGS`. From that table come the command-line
flag (``--max-queue``), the environment variable (``OAI2OLLAMA_MAX_QUEUE``), the key in the
config file's ``[server]`` table (``max_queue``), ``--help``, and the README's settings table.
Precedence: flag > environment > config file > default.

To add a setting:

1. add a ``Setting(...)`` to :data:`SETTINGS`, in its group: name (the flag's, with
   underscores), help, parser (text → value, raising ``argparse.ArgumentTypeError`` for bad
   text; the ``parse_*`` functions below cover most), default, unit;
2. add a field of the same name and default to :class:`~oai2ollama.config.Settings` (a test
   holds the two together);
3. regenerate the README's table: ``python -m oai2ollama.settings --readme README.md``.

The model configuration (aliases, per-model defaults) is the rest of the same TOML file; it is
read by :mod:`oai2ollama.policy`, and the settings here that override it say where it lives.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from . import __version__
from .config import (
    DEFAULT_MAX_IMAGE_URLS,
    DEFAULT_MAX_LINE_SIZE,
    Settings,
    SettingsError,
    parse_ollama_url,
)
from .policy import DEFAULT_MAX_NUM_CTX, ConfigError, ModelPolicy, load_config, policy_from
from .store import DEFAULT_MAX_ENTRY, DEFAULT_TTL, is_redis_url, redis_address

ENV_PREFIX = "OAI2OLLAMA_"
SERVER = "server"  # the config file's table for these settings
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
README_START = "<!-- settings table: python -m oai2ollama.settings --readme README.md -->"
README_END = "<!-- end of settings table -->"


# --------------------------------------------------------------------------------------------
# Parsers: text (a flag, a variable, a value from the file) → value


def _whole(text: str, what: str, lo: int, hi: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if value < lo or (hi is not None and value > hi):
        bounds = f"{lo} to {hi}" if hi is not None else f"at least {lo}"
        raise argparse.ArgumentTypeError(f"out of range ({bounds}): {value}")
    return value


def parse_port(text: str) -> int:
    return _whole(text, "a port number", 0, 65535)


def parse_count(text: str) -> int:
    return _whole(text, "a whole number", 0)


def parse_size(text: str) -> int:
    return _whole(text, "a number of bytes", 1024)


def parse_store(text: str) -> int | str:
    """A count kept in memory, or a Redis URL."""
    if is_redis_url(text.strip()):
        return text.strip()
    try:
        return parse_count(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"not a count nor a redis:// or rediss:// URL: {text!r}"
        ) from None


def parse_num_ctx(text: str) -> int | str:
    return text if text == "auto" else _whole(text, "a number of tokens or 'auto'", 1)


def parse_max_num_ctx(text: str) -> int:
    return _whole(text, "a number of tokens", 256)


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be zero or more: {text!r}")
    return value


def parse_positive_seconds(text: str) -> float:
    value = parse_seconds(text)
    if value == 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than zero: {text!r}")
    return value


def parse_keep_alive(text: str) -> str | int:
    """Ollama takes seconds as a number and durations as strings."""
    try:
        return int(text)
    except ValueError:
        return text


def parse_alias(text: str) -> tuple[str, str]:
    name, sep, model = text.partition("=")
    if not sep or not name.strip() or not model.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=MODEL: {text!r}")
    return name.strip(), model.strip()


def parse_ollama(text: str) -> str:
    try:
        return parse_ollama_url(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected one of {'/'.join(TRUE + FALSE)}: {text!r}")


# --------------------------------------------------------------------------------------------
# The declarations

Kind = Literal["value", "bool", "list"]


@dataclass(frozen=True, slots=True)
class Setting:
    name: str  # --name-with-dashes, OAI2OLLAMA_NAME, [server] name
    group: str  # the heading in --help and in the README's table
    help: str  # one line, Markdown (`code` is shown plain in --help)
    parse: Callable[[str], Any] = str  # text → value; argparse.ArgumentTypeError when unusable
    default: Any = None
    unit: str = ""
    kind: Kind = "value"  # "bool": --name/--no-name; "list": repeatable, comma-separated in env
    choices: tuple[str, ...] = ()  # accepted words, any case
    metavar: str | None = None
    also_env: tuple[str, ...] = ()  # read after OAI2OLLAMA_<NAME>, e.g. Ollama's OLLAMA_HOST
    shown_default: str | None = None  # the default as the docs say it, when not the value
    # Where the config file sets it: "server" (the [server] table), a place in the model
    # configuration (the setting then overrides that place), or "" (nowhere).
    file_key: str = SERVER
    # The Settings field it fills: "" = the same name, None = assembled by hand (settings_from).
    field: str | None = ""
    to_field: Callable[[Any], Any] | None = None  # value → field value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> tuple[str, ...]:
        return (ENV_PREFIX + self.name.upper(), *self.also_env)

    @property
    def attr(self) -> str | None:
        return self.name if self.field == "" else self.field

    def convert(self, text: str) -> Any:
        """One item of text as the value (for a list, one element)."""
        if self.choices:
            word = text.strip().lower()
            if word not in self.choices:
                raise argparse.ArgumentTypeError(
                    f"{text!r} is not one of {', '.join(self.choices)}"
                )
            return word
        return self.parse(text)

    def field_value(self, value: Any) -> Any:
        return self.to_field(value) if self.to_field else value


SETTINGS: tuple[Setting, ...] = (
    # server
    Setting(
        "host",
        "server",
        "address to listen on; a non-loopback address needs an API key (see *Security*)",
        default="127.0.0.1",
        metavar="ADDRESS",
    ),
    Setting(
        "port",
        "server",
        "port to listen on; `0` picks a free one and prints it",
        parse_port,
        11435,
    ),
    Setting(
        "max_body_size",
        "server",
        "largest request body; larger ones get 413",
        parse_size,
        16 * 1024 * 1024,
        "bytes",
    ),
    Setting(
        "max_concurrency",
        "server",
        "generation requests sent to Ollama at once; `0` = no limit",
        parse_count,
        0,
        "requests",
    ),
    Setting(
        "max_queue",
        "server",
        "requests that may wait for a slot when `--max-concurrency` is reached; beyond, 429 "
        "with `Retry-After: 1`",
        parse_count,
        64,
        "requests",
    ),
    Setting(
        "shutdown_grace",
        "server",
        "on SIGTERM/SIGINT, time requests in flight get to finish before open streams end "
        "with an error",
        parse_seconds,
        10.0,
        "seconds",
    ),
    Setting(
        "loop",
        "server",
        "event loop: `auto` takes uvloop if installed (`pip install 'oai2ollama[speed]'`), "
        "else asyncio's own",
        default="auto",
        choices=("auto", "asyncio", "uvloop"),
    ),
    Setting(
        "responses_store",
        "server",
        "where Responses API answers are kept for `previous_response_id` and "
        "`GET /v1/responses/{id}`: a count kept in memory (newest first, 64 MiB at most; `0` = "
        "stateless), or `redis://host:6379/0` (`rediss://` for TLS) to share them between "
        "replicas (see *The Responses store*)",
        parse_store,
        256,
        metavar="N|URL",
    ),
    Setting(
        "responses_ttl",
        "server",
        "how long a stored response is kept; `0` = no expiry",
        parse_count,
        DEFAULT_TTL,
        "seconds",
        shown_default=f"`{DEFAULT_TTL}` (30 days)",
    ),
    Setting(
        "responses_max_entry_bytes",
        "server",
        "largest stored response with its conversation (as JSON); larger ones get 400",
        parse_size,
        DEFAULT_MAX_ENTRY,
        "bytes",
    ),
    Setting(
        "refuse_hosted_tools",
        "server",
        "answer 400 to Responses requests that offer hosted tools (`web_search`, `file_search`, "
        "`mcp`, …) instead of leaving them out with an `X-Oai2ollama-Warning` header",
        default=False,
        kind="bool",
    ),
    # Ollama
    Setting(
        "ollama_url",
        "Ollama",
        "Ollama's address, in any form Ollama itself accepts: `host`, `host:port`, `:port`, "
        "`http(s)://host[:port][/path]`; `0.0.0.0` means this machine",
        parse_ollama,
        "http://127.0.0.1:11434",
        metavar="URL",
        also_env=("OLLAMA_HOST",),
    ),
    Setting(
        "connect_timeout",
        "Ollama",
        "time to wait for a connection to Ollama; `0` = no limit",
        parse_seconds,
        5.0,
        "seconds",
    ),
    Setting(
        "first_byte_timeout",
        "Ollama",
        "time Ollama may take to start answering (loading the model, reading the prompt); for "
        "a non-stream request, the whole answer; `0` = no limit",
        parse_seconds,
        600.0,
        "seconds",
    ),
    Setting(
        "idle_timeout",
        "Ollama",
        "longest silence between two chunks of a stream; `0` = no limit",
        parse_seconds,
        120.0,
        "seconds",
    ),
    Setting(
        "request_timeout",
        "Ollama",
        "limit on a whole upstream request; `0` = no limit",
        parse_seconds,
        0.0,
        "seconds",
        to_field=lambda value: value or None,
    ),
    Setting(
        "keepalive_interval",
        "Ollama",
        "while Ollama is silent, an SSE comment this often, so clients and proxies wait; `0` = off",
        parse_seconds,
        5.0,
        "seconds",
    ),
    Setting(
        "max_line_size",
        "Ollama",
        "longest line of Ollama's streamed (NDJSON) answer; a longer one ends the answer with an "
        "error (`upstream_line_too_long`)",
        parse_size,
        DEFAULT_MAX_LINE_SIZE,
        "bytes",
    ),
    # security
    Setting(
        "api_key",
        "security",
        "accept this key as `Authorization: Bearer <key>`; repeatable; without any key every "
        "request is accepted",
        str.strip,
        default=(),
        kind="list",
        metavar="KEY",
        field=None,
    ),
    Setting(
        "api_key_file",
        "security",
        "file with one accepted key per line (`#` comments), added to the keys above",
        metavar="PATH",
        field=None,
    ),
    Setting(
        "allow_unauthenticated",
        "security",
        "listen on a non-loopback address without an API key (refused otherwise)",
        default=False,
        kind="bool",
    ),
    Setting(
        "cors_origin",
        "security",
        "allow browser pages from this origin (a glob such as `chrome-extension://*`); "
        "repeatable; CORS is off without one",
        str.strip,
        default=(),
        kind="list",
        metavar="PATTERN",
        shown_default="none (CORS off)",
        field="cors_origins",
        to_field=tuple,
    ),
    Setting(
        "open_discovery",
        "security",
        "with API keys, let `GET /api/version`, `GET /api/tags`, `POST /api/show`, `GET /` and "
        "`HEAD /` through without a key, for clients that discover models without one (Copilot "
        "Chat's Ollama provider); a key that is sent must still be right",
        default=False,
        kind="bool",
    ),
    Setting(
        "allow_model_management",
        "security",
        "pass Ollama's model management through: `/api/pull`, `/api/push`, `/api/create`, "
        "`/api/copy`, `/api/delete`, `/api/blobs/*` (refused with 403 otherwise)",
        default=False,
        kind="bool",
    ),
    # models
    Setting(
        "config",
        "models",
        "TOML file with aliases, per-model defaults (see *Models, aliases and context length*) "
        "and a `[server]` table of these settings",
        metavar="PATH",
        file_key="",
        field=None,
    ),
    Setting(
        "alias",
        "models",
        "answer `NAME` (a glob such as `gpt-4o*`) with the local `MODEL`; repeatable; these "
        "come before the config file's",
        parse_alias,
        kind="list",
        metavar="NAME=MODEL",
        file_key="aliases",
        field=None,
    ),
    Setting(
        "default_model",
        "models",
        "local model for names that are neither aliases nor local models",
        metavar="MODEL",
        file_key="default_model",
        field=None,
    ),
    Setting(
        "num_ctx",
        "models",
        "context length for every model unless configured per model: tokens, or `auto` (the "
        "model's trained length, capped by `--max-num-ctx`)",
        parse_num_ctx,
        unit="tokens",
        shown_default="Ollama's",
        file_key="defaults.num_ctx",
        field=None,
    ),
    Setting(
        "max_num_ctx",
        "models",
        "cap for `--num-ctx auto`",
        parse_max_num_ctx,
        DEFAULT_MAX_NUM_CTX,
        "tokens",
        file_key="max_num_ctx",
        field=None,
    ),
    Setting(
        "keep_alive",
        "models",
        "how long Ollama keeps a model loaded: `30m`, `-1` for ever, or seconds",
        parse_keep_alive,
        shown_default="Ollama's",
        metavar="DURATION",
        file_key="defaults.keep_alive",
        field=None,
    ),
    # images
    Setting(
        "allow_image_urls",
        "images",
        "fetch `http(s)` image URLs for vision models (see *Images by URL*); private, loopback "
        "and link-local addresses are never fetched",
        default=False,
        kind="bool",
    ),
    Setting(
        "image_max_bytes",
        "images",
        "largest image fetched from a URL",
        parse_size,
        10 * 1024 * 1024,
        "bytes",
    ),
    Setting(
        "max_image_urls",
        "images",
        "most image URLs fetched for one request; more get 400 `too_many_image_urls`",
        parse_count,
        DEFAULT_MAX_IMAGE_URLS,
        "images",
    ),
    Setting(
        "image_timeout",
        "images",
        "time allowed for fetching one image URL",
        parse_positive_seconds,
        10.0,
        "seconds",
    ),
    # logging
    Setting("log_level", "logging", "how much is logged", default="info", choices=LOG_LEVELS),
    Setting(
        "log_format",
        "logging",
        "log lines as text, or as one JSON object each, the access log's fields included",
        default="text",
        choices=("text", "json"),
    ),
    Setting(
        "access_log",
        "logging",
        "a line per request: method, path, model, status, duration, tokens",
        default=True,
        kind="bool",
    ),
    Setting(
        "log_bodies",
        "logging",
        "log request bodies (prompts!) at debug level",
        default=False,
        kind="bool",
    ),
)

BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


# --------------------------------------------------------------------------------------------
# The argument parser and --help


def _plain(text: str) -> str:
    text = re.sub(r"\*([A-Z][^*]*)\*", r"\1", text)  # *Section* → Section
    return text.replace("`", "").replace("%", "%%")


def _shown_default(s: Setting) -> str:
    if s.shown_default is not None:
        return s.shown_default
    if s.kind == "bool":
        return "on" if s.default else "off"
    if s.default is None or s.default == ():
        return "none"
    if isinstance(s.default, float) and s.default.is_integer():
        return str(int(s.default))
    return str(s.default)


def _metavar(s: Setting) -> str | None:
    if s.metavar:
        return s.metavar
    if s.choices:
        return "{" + ",".join(s.choices) + "}"
    if s.unit in ("seconds", "bytes", "tokens"):
        return s.unit.upper()
    return "N" if s.unit else None


def _flag_help(s: Setting) -> str:
    unit = f"{s.unit}, " if s.unit else ""
    env = ", ".join(f"${name}" for name in s.env)
    return f"{_plain(s.help)} ({unit}default {_plain(_shown_default(s))}; {env})"


LISTS = ", ".join(s.flag for s in SETTINGS if s.kind == "list")
EPILOG = f"""\
Every setting can also come from the environment, {ENV_PREFIX}<NAME> (the flag's name in
capitals, dashes as underscores), and from the [server] table of the --config file (the
flag's name with underscores). Precedence: flag > environment > config file > default.
Lists ({LISTS}): repeat the flag; comma-separated in the
environment; an array of strings in the file. On/off settings: --name or --no-name;
{"/".join(TRUE)} or {"/".join(FALSE)} in the environment; true or false in the file.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line, made from :data:`SETTINGS`; a flag not given parses as ``None``."""
    parser = _Parser(
        prog="oai2ollama",
        description="Serve the OpenAI API (/v1) from a local Ollama server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"oai2ollama {__version__}")
    groups: dict[str, Any] = {}
    for s in SETTINGS:
        if s.group not in groups:
            groups[s.group] = parser.add_argument_group(s.group)
        options: dict[str, Any] = {"dest": s.name, "default": None, "help": _flag_help(s)}
        if s.kind == "bool":
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = s.convert
            options["metavar"] = _metavar(s)
            if s.kind == "list":
                options["action"] = "append"
        groups[s.group].add_argument(s.flag, **options)
    return parser


# --------------------------------------------------------------------------------------------
# Flags, environment, file → Settings


def _from_text(s: Setting, text: str) -> Any:
    if s.kind == "bool":
        return parse_bool(text)
    if s.kind == "list":
        return [s.convert(item.strip()) for item in text.split(",") if item.strip()]
    return s.convert(text.strip())


def _from_file(s: Setting, raw: Any, where: str) -> Any:
    try:
        if s.kind == "bool":
            if not isinstance(raw, bool):
                raise argparse.ArgumentTypeError("must be true or false")
            return raw
        if s.kind == "list":
            items = [raw] if isinstance(raw, str) else raw
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise argparse.ArgumentTypeError("must be a string or an array of strings")
            return [s.convert(item.strip()) for item in items if item.strip()]
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise argparse.ArgumentTypeError(f"must be a string or a number, not {raw!r}")
        return s.convert(str(raw))
    except argparse.ArgumentTypeError as exc:
        raise SettingsError(f"{where}: {exc}") from None


def _server_table(data: dict[str, Any], where: str) -> dict[str, Any]:
    table = data.pop(SERVER, {})
    if not isinstance(table, dict):
        raise SettingsError(f"{where}: [server] must be a table")
    for key in table:
        s = BY_NAME.get(key)
        if s is None:
            raise SettingsError(f"{where}: unknown key {key!r} in [server]")
        if s.file_key != SERVER:
            home = f"set {s.file_key!r} outside [server]" if s.file_key else "not for the file"
            raise SettingsError(f"{where}: [server] {key}: {home}")
    return table


def resolve(
    args: argparse.Namespace, env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each setting's value, flag > environment > config file > default, and the file's data.

    A model setting (one with a place in the model configuration) resolves to ``None`` when
    neither flag nor environment sets it, so the file's value stands.
    """
    values: dict[str, Any] = {}

    def given(s: Setting) -> Any:
        flag = getattr(args, s.name, None)
        if s.kind == "list" and flag is not None:
            flag = [item for item in flag if item != ""] or None
        if flag is not None:
            return flag
        for name in s.env:
            text = env.get(name, "")
            if text.strip():
                try:
                    value = _from_text(s, text)
                except argparse.ArgumentTypeError as exc:
                    raise SettingsError(f"{name}: {exc}") from None
                if value != []:
                    return value
        return None

    path = given(BY_NAME["config"])
    data: dict[str, Any] = {}
    if path:
        try:
            data = load_config(path)
        except ConfigError as exc:
            raise SettingsError(str(exc)) from None
    table = _server_table(data, str(path))
    values["config"] = path
    for s in SETTINGS:
        if s.name == "config":
            continue
        value = given(s)
        if value is None and s.name in table:
            value = _from_file(s, table[s.name], f"{path} [server] {s.name}")
        if value is None and s.file_key == SERVER:
            value = s.default
        values[s.name] = value
    return values, data


def model_policy(values: Mapping[str, Any], data: dict[str, Any]) -> ModelPolicy:
    """The config file's model configuration, with flags and environment on top."""
    path = values.get("config")
    overrides: dict[str, Any] = {}
    if values["num_ctx"] is not None:
        overrides["num_ctx"] = values["num_ctx"]
    if values["keep_alive"] is not None:
        overrides["keep_alive"] = values["keep_alive"]
    file_defaults = data.get("defaults", {})
    defaults = {**file_defaults, **overrides} if isinstance(file_defaults, dict) else file_defaults
    aliases: Any = dict(values["alias"] or [])
    file_aliases = data.get("aliases", {})
    if isinstance(file_aliases, dict):
        aliases.update({k: v for k, v in file_aliases.items() if k not in aliases})
    else:
        aliases = file_aliases
    merged = {**data, "defaults": defaults, "aliases": aliases}
    if values["default_model"]:
        merged["default_model"] = values["default_model"]
    if values["max_num_ctx"] is not None:
        merged["max_num_ctx"] = values["max_num_ctx"]
    try:
        return policy_from(merged, where=str(path) if path else "flags")
    except ConfigError as exc:
        raise SettingsError(str(exc)) from None


def api_keys(values: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys given (flags, else environment, else file), plus those in the key file."""
    keys = list(values["api_key"] or [])
    key_file = values["api_key_file"]
    if key_file:
        try:
            text = Path(key_file).read_text()
        except OSError as exc:
            raise SettingsError(f"--api-key-file {key_file!r}: {exc.strerror}") from None
        found = [line.strip() for line in text.splitlines()]
        keys += [k for k in found if k and not k.startswith("#")]
        if not keys:
            raise SettingsError(f"--api-key-file {key_file!r} holds no key")
    return tuple(dict.fromkeys(keys))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Flags, then environment, then the config file, then defaults; SettingsError if unusable."""
    values, data = resolve(args, env)
    fields = {s.attr: s.field_value(values[s.name]) for s in SETTINGS if s.attr}
    settings = Settings(**fields, api_keys=api_keys(values), policy=model_policy(values, data))
    if (
        not settings.api_keys
        and not settings.allow_unauthenticated
        and not is_loopback(settings.host)
    ):
        raise SettingsError(
            f"--host {settings.host} would let anyone on the network use Ollama through this "
            "server; set --api-key (or --api-key-file), or pass --allow-unauthenticated"
        )
    store = settings.responses_store
    if isinstance(store, str) and importlib.util.find_spec("redis") is None:
        raise SettingsError(
            f"--responses-store {redis_address(store)} needs the Redis client: "
            "pip install 'oai2ollama[redis]'"
        )
    return settings


# --------------------------------------------------------------------------------------------
# The README's table


def _code(text: str) -> str:
    return f"`{text}`"


def _md_flag(s: Setting) -> str:
    if s.kind == "bool":
        return _code("--[no-]" + s.name.replace("_", "-"))
    return _code(s.flag + (f" {s.metavar}" if s.kind == "list" and s.metavar else ""))


def _md_default(s: Setting) -> str:
    if s.shown_default is not None or s.kind == "bool" or s.default in (None, ()):
        return _shown_default(s)
    return _code(_shown_default(s))


def _md_file(s: Setting) -> str:
    if s.file_key == SERVER:
        return _code(f"server.{s.name}")
    return _code(s.file_key) if s.file_key else "—"


def markdown() -> str:
    """The settings table for the README."""
    lines = [
        "| flag | environment | config file | default | unit | meaning |",
        "|---|---|---|---|---|---|",
    ]
    group = None
    for s in SETTINGS:
        if s.group != group:
            group = s.group
            lines.append(f"| **{group}** | | | | | |")
        env = ", ".join(_code(name) for name in s.env)
        meaning = s.help
        if s.choices:
            meaning += " (" + ", ".join(_code(c) for c in s.choices) + ")"
        cells = (_md_flag(s), env, _md_file(s), _md_default(s), s.unit, meaning)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def readme_with_table(readme: str) -> str:
    """``readme`` with the text between the table's markers replaced by :func:`markdown`."""
    head, start, rest = readme.partition(README_START)
    _, end, tail = rest.partition(README_END)
    if not start or not end:
        raise ValueError("the README has no settings table markers")
    return f"{head}{start}\n{markdown()}{end}{tail}"


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oai2ollama.settings", description="Print or update the settings table."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--markdown", action="store_true", help="print the README's table")
    action.add_argument("--readme", metavar="PATH", help="rewrite the table in this README")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
        return 0
    path = Path(args.readme)
    path.write_text(readme_with_table(path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
