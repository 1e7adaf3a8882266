"""Model policy: aliases, per-model defaults (num_ctx, keep_alive, options), the config file.

The operator's rules for which local model answers a name and how it is run. Everything but
:func:`load_config` is pure, so the rules are tested on plain values. The file's ``[server]``
table holds runtime settings instead; :mod:`oai2ollama.settings` takes it out before
:func:`policy_from` sees the rest.
"""

from __future__ import annotations

import fnmatch
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidRequest
from .translate.options import RUNNER_OPTIONS, check_option

AUTO = "auto"
DEFAULT_MAX_NUM_CTX = 32768


class ConfigError(ValueError):
    """The config file cannot be used; reported in one line at start-up."""


@dataclass(frozen=True, slots=True)
class Profile:
    """How a model is run unless the client says otherwise."""

    num_ctx: int | str | None = None  # a number of tokens, "auto", or None (Ollama decides)
    keep_alive: str | int | float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def over(self, base: Profile) -> Profile:
        """This profile's values on top of ``base``."""
        return Profile(
            num_ctx=self.num_ctx if self.num_ctx is not None else base.num_ctx,
            keep_alive=self.keep_alive if self.keep_alive is not None else base.keep_alive,
            options={**base.options, **self.options},
        )


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    defaults: Profile = field(default_factory=Profile)
    models: tuple[tuple[str, Profile], ...] = ()  # glob pattern → profile, in file order
    aliases: tuple[tuple[str, str], ...] = ()  # glob pattern → Ollama model, in file order
    default_model: str | None = None  # answers names that are neither aliases nor local models
    client_overrides: bool = True  # may clients set num_ctx, keep_alive and options?
    max_num_ctx: int = DEFAULT_MAX_NUM_CTX  # cap for num_ctx = "auto"

    def alias(self, name: str) -> str | None:
        """The model an alias stands for: an exact alias first, then patterns in order."""
        for pattern, target in self.aliases:
            if pattern == name:
                return target
        for pattern, target in self.aliases:
            if fnmatch.fnmatchcase(name, pattern):
                return target
        return None

    def alias_pattern(self, name: str) -> str | None:
        """The alias entry that answers ``name``: the name itself or the matching pattern."""
        for pattern, _ in self.aliases:
            if pattern == name:
                return pattern
        for pattern, _ in self.aliases:
            if fnmatch.fnmatchcase(name, pattern):
                return pattern
        return None

    def listed_aliases(self) -> list[tuple[str, str]]:
        """Aliases that name one model (no wildcards), for ``/v1/models``."""
        return [(a, t) for a, t in self.aliases if not any(c in a for c in "*?[")]

    def profile(self, model: str) -> Profile:
        profile = self.defaults
        for pattern, overlay in self.models:
            if _matches(model, pattern):
                profile = overlay.over(profile)
        return profile


def _matches(model: str, pattern: str) -> bool:
    """``llama3.2`` names ``llama3.2:latest`` too, as in Ollama."""
    if fnmatch.fnmatchcase(model, pattern):
        return True
    return ":" not in pattern and model == f"{pattern}:latest"


def apply(
    payload: dict[str, Any],
    policy: ModelPolicy,
    profile: Profile,
    context_length: int | None = None,
) -> dict[str, Any]:
    """Merge the operator's profile into an Ollama request built from the client's body.

    With ``client_overrides`` the client's values win; without, the profile's do, and the
    client cannot change ``keep_alive`` or the runner options (``num_ctx`` and friends), whose
    every change makes Ollama reload the model.
    """
    client = payload.get("options") or {}
    if not policy.client_overrides:
        client = {k: v for k, v in client.items() if k not in RUNNER_OPTIONS}
        payload.pop("keep_alive", None)
    options = (
        {**profile.options, **client} if policy.client_overrides else {**client, **profile.options}
    )
    if "num_ctx" not in options or not policy.client_overrides:
        num_ctx = default_num_ctx(policy, profile, context_length)
        if num_ctx is not None:
            options["num_ctx"] = num_ctx
    if options:
        payload["options"] = options
    if profile.keep_alive is not None and "keep_alive" not in payload:
        payload["keep_alive"] = profile.keep_alive
    return payload


def default_num_ctx(
    policy: ModelPolicy, profile: Profile, context_length: int | None
) -> int | None:
    """The ``num_ctx`` sent for a model when the request sets none; None leaves it to Ollama."""
    num_ctx = profile.num_ctx
    if num_ctx == AUTO:
        return min(context_length, policy.max_num_ctx) if context_length else None
    return num_ctx if isinstance(num_ctx, int) else None


def needs_context_length(policy: ModelPolicy, profile: Profile, payload: dict[str, Any]) -> bool:
    """Whether ``apply`` will want the model's trained context length (``num_ctx = "auto"``)."""
    if profile.num_ctx != AUTO:
        return False
    return not (policy.client_overrides and "num_ctx" in (payload.get("options") or {}))


def likely_truncated(text_chars: int, num_ctx: Any) -> bool:
    """True when a prompt cannot fit: even at 6 characters a token it is longer than ``num_ctx``.

    Ollama keeps the system prompt and the newest messages and drops the rest without a word, so
    this is the client's only hint. Six characters a token undercounts every real tokenizer, so
    the warning errs on the side of silence.
    """
    return isinstance(num_ctx, int) and num_ctx > 0 and text_chars / 6 > num_ctx


def context_full(prompt_tokens: int, num_ctx: Any) -> bool:
    """True when the prompt Ollama evaluated came within 2 % of ``num_ctx``: a prompt cut to fit
    lands there, and one that fits so tightly leaves almost no room for the answer either."""
    return isinstance(num_ctx, int) and num_ctx > 0 and prompt_tokens >= num_ctx * 0.98


# --------------------------------------------------------------------------------------------
# The config file


def load_config(path: str | Path) -> dict[str, Any]:
    """Read the TOML config file into plain values; :class:`ConfigError` when unusable."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def policy_from(data: Mapping[str, Any], *, where: str = "config") -> ModelPolicy:
    """Build the policy from the config file's tables (see the README for the format)."""
    known = {"defaults", "models", "aliases", "default_model", "client_overrides", "max_num_ctx"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    defaults = _profile(data.get("defaults", {}), f"{where} [defaults]")
    models_table = data.get("models", {})
    if not isinstance(models_table, dict):
        raise ConfigError(f"{where}: [models] must be a table")
    models = tuple(
        (name, _profile(table, f"{where} [models.{name!r}]"))
        for name, table in models_table.items()
    )
    aliases_table = data.get("aliases", {})
    if not isinstance(aliases_table, dict) or not all(
        isinstance(v, str) and v for v in aliases_table.values()
    ):
        raise ConfigError(f"{where}: [aliases] must map names to model names (strings)")
    default_model = data.get("default_model")
    if default_model is not None and (not isinstance(default_model, str) or not default_model):
        raise ConfigError(f"{where}: default_model must be a model name")
    overrides = data.get("client_overrides", True)
    if not isinstance(overrides, bool):
        raise ConfigError(f"{where}: client_overrides must be true or false")
    max_ctx = data.get("max_num_ctx", DEFAULT_MAX_NUM_CTX)
    if not isinstance(max_ctx, int) or isinstance(max_ctx, bool) or max_ctx < 256:
        raise ConfigError(f"{where}: max_num_ctx must be a number of tokens (at least 256)")
    return ModelPolicy(
        defaults=defaults,
        models=models,
        aliases=tuple(aliases_table.items()),
        default_model=default_model,
        client_overrides=overrides,
        max_num_ctx=max_ctx,
    )


# Go's time.ParseDuration, which is how Ollama reads a keep_alive string.
_GO_DURATION = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")


def check_keep_alive(value: Any, where: str) -> str | int | float:
    """A keep_alive Ollama accepts: seconds (a number, or text that is one; negative = for ever)
    or a Go duration such as ``30m`` or ``1h30m``. Text that is a number becomes the number."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            if text == "0" or _GO_DURATION.fullmatch(text):
                return text
        else:
            if math.isfinite(number):
                return number
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    raise ConfigError(
        f"{where} {value!r}: not a duration ('30m', '1h30m') or a number of seconds "
        "('-1' keeps the model loaded for ever)"
    )


def _profile(table: Any, where: str) -> Profile:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(table) - {"num_ctx", "keep_alive", "options"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    num_ctx = table.get("num_ctx")
    if (
        num_ctx is not None
        and num_ctx != AUTO
        and (not isinstance(num_ctx, int) or isinstance(num_ctx, bool) or num_ctx < 1)
    ):
        raise ConfigError(f'{where}: num_ctx must be a number of tokens or "auto"')
    keep_alive = table.get("keep_alive")
    if keep_alive is not None:
        keep_alive = check_keep_alive(keep_alive, f"{where}: keep_alive")
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: options must be a table")
    try:
        checked = {name: check_option(name, value) for name, value in options.items()}
    except InvalidRequest as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    from_options = checked.pop("num_ctx", None)
    if num_ctx is None:
        num_ctx = from_options
    return Profile(num_ctx=num_ctx, keep_alive=keep_alive, options=checked)
