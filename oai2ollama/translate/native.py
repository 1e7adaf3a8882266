"""Ollama's face: the few changes this server makes to Ollama's own answers, as pure functions.

Aliases appear in ``/api/tags`` as models of their own, and where this server sets ``num_ctx``
for a model, ``/api/show`` and ``/api/tags`` report that context instead of the trained one, so
a client that budgets its prompts from them (VS Code Copilot Chat does) budgets for the window
the model really runs with. The trained length stays visible under :data:`TRAINED_CONTEXT_KEY`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from .models import context_length_of, entries, entry_for
from .stream import usage

# In ``/api/show``'s ``model_info``: the model's trained context length, wherever this server
# reports the ``num_ctx`` it sends under ``<arch>.context_length``.
TRAINED_CONTEXT_KEY = "oai2ollama.trained_context_length"

# The num_ctx this server sends for a model (by its local name) given its trained length.
ContextFor = Callable[[str, int | None], int | None]

_NUMBER = re.compile(rb"\s*:\s*(\d+)")


def context_in_use(num_ctx: int | None, trained: int | None) -> int | None:
    """The context a model runs with when it is sent ``num_ctx``: Ollama cuts a larger value
    down to the trained length."""
    if num_ctx is None:
        return None
    return min(num_ctx, trained) if trained else num_ctx


def show_answer(info: dict[str, Any], num_ctx: int | None) -> dict[str, Any]:
    """Ollama's ``/api/show`` answer, with the context this server runs the model with."""
    trained = context_length_of(info)
    context = context_in_use(num_ctx, trained)
    if context is None:
        return info
    model_info = info.get("model_info")
    arch = model_info.get("general.architecture") if isinstance(model_info, dict) else None
    if isinstance(model_info, dict) and isinstance(arch, str) and arch:
        info["model_info"] = model_info = dict(model_info)
        if trained:
            model_info[TRAINED_CONTEXT_KEY] = trained
        model_info[f"{arch}.context_length"] = context
    details = info.get("details")
    if isinstance(details, dict) and "context_length" in details:
        info["details"] = {**details, "context_length": context}
    return info


def tags_answer(
    tags: Mapping[str, Any],
    aliases: Iterable[tuple[str, str]],
    context_for: ContextFor = lambda _model, _trained: None,
) -> dict[str, Any]:
    """Ollama's ``/api/tags``, then each alias whose model is pulled, shaped as that model's
    entry under the alias's name. ``details.context_length`` (Ollama ≥ 0.30) reports the
    context in use where this server sets one. ``tags`` is left as it was."""
    models = [_with_context(entry, _name(entry), context_for) for entry in entries(tags)]
    for alias, target in aliases:
        entry = entry_for(tags, target)
        if entry is not None and entry_for(tags, alias) is None:
            shaped = {**entry, "name": alias, "model": alias}
            models.append(_with_context(shaped, _name(entry), context_for))
    return {**tags, "models": models}


def _name(entry: Mapping[str, Any]) -> str:
    return entry.get("model") or entry.get("name") or ""


def _with_context(entry: dict[str, Any], model: str, context_for: ContextFor) -> dict[str, Any]:
    details = entry.get("details")
    if not isinstance(details, dict) or not isinstance(details.get("context_length"), int):
        return entry
    trained = details["context_length"]
    context = context_in_use(context_for(model, trained), trained)
    if context is None or context == trained:
        return entry
    return {**entry, "details": {**details, "context_length": context}}


def usage_in(answer: bytes) -> dict[str, int]:
    """The token counts in Ollama's last line (or whole answer), found without parsing it: a
    key with its quotes cannot occur inside a JSON string, whose quotes are escaped."""
    return usage(_counter(answer, b'"prompt_eval_count"'), _counter(answer, b'"eval_count"'))


def _counter(answer: bytes, key: bytes) -> int:
    at = answer.rfind(key)
    if at < 0:
        return 0
    match = _NUMBER.match(answer, at + len(key))
    return int(match.group(1)) if match else 0


def renamer(target: str, requested: str) -> Callable[[bytes], bytes]:
    """Put the name the client asked for back in Ollama's answer (or a line of it), which
    echoes the model it was sent; the same reasoning about quotes holds."""
    pattern = re.compile(rb'"model"\s*:\s*' + re.escape(orjson.dumps(target)))
    name = b'"model":' + orjson.dumps(requested)

    def rename(data: bytes) -> bytes:
        return pattern.sub(lambda _: name, data, count=1)

    return rename
