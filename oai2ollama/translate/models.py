"""Models: Ollama `/api/tags` and `/api/show` → OpenAI `/v1/models` and `/v1/models/{id}`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from ..errors import ModelNotFound

ShowLookup = Callable[[str], Mapping[str, Any] | None]


def created_from(modified_at: Any) -> int:
    """Ollama's RFC 3339 time (up to 9 fractional digits) → unix seconds; 0 when unreadable."""
    if not isinstance(modified_at, str):
        return 0
    try:
        return int(datetime.fromisoformat(modified_at).timestamp())
    except ValueError:
        return 0


def owned_by(name: str) -> str:
    """``library`` for official models, else the namespace (``user/model`` → ``user``)."""
    parts = name.split("/")
    return parts[-2] if len(parts) > 1 else "library"


def context_length_of(info: Mapping[str, Any]) -> int | None:
    """The trained context length: ``details.context_length`` (``/api/tags`` on Ollama ≥ 0.30)
    or ``model_info["<arch>.context_length"]`` (``/api/show``)."""
    details = info.get("details")
    if isinstance(details, dict):
        value = details.get("context_length")
        if isinstance(value, int) and value > 0:
            return value
    model_info = info.get("model_info")
    if not isinstance(model_info, dict):
        return None
    arch = model_info.get("general.architecture")
    value = model_info.get(f"{arch}.context_length") if isinstance(arch, str) else None
    return value if isinstance(value, int) and value > 0 else None


def model_object(
    entry: Mapping[str, Any], model_id: str | None = None, info: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One model; ``context_length`` and ``capabilities`` are added when Ollama told us."""
    name = entry.get("model") or entry.get("name") or ""
    out: dict[str, Any] = {
        "id": model_id or name,
        "object": "model",
        "created": created_from(entry.get("modified_at")),
        "owned_by": owned_by(name),
    }
    context = context_length_of(entry) or (context_length_of(info) if info else None)
    if context:
        out["context_length"] = context
    capabilities = entry.get("capabilities") or (info or {}).get("capabilities")
    if isinstance(capabilities, list) and capabilities:
        out["capabilities"] = capabilities
    return out


def entries(tags: Any) -> list[dict[str, Any]]:
    models = tags.get("models") if isinstance(tags, dict) else None
    return [m for m in models or () if isinstance(m, dict)]


def entry_for(tags: Any, name: str) -> dict[str, Any] | None:
    """The model called ``name``; a name without a tag means ``:latest``, as in Ollama."""
    wanted = {name} if ":" in name.rsplit("/", 1)[-1] else {name, f"{name}:latest"}
    for entry in entries(tags):
        if entry.get("model") in wanted or entry.get("name") in wanted:
            return entry
    return None


def model_list(
    tags: Any, aliases: Iterable[tuple[str, str]] = (), show: ShowLookup = lambda _: None
) -> dict[str, Any]:
    """Ollama's models, then the aliases whose target exists (with ``alias_for``)."""
    data = []
    for entry in entries(tags):
        data.append(model_object(entry, info=show(entry.get("model") or entry.get("name") or "")))
    for alias, target in aliases:
        entry = entry_for(tags, target)
        if entry is not None:
            data.append(alias_object(alias, target, entry, show(target)))
    return {"object": "list", "data": data}


def alias_object(
    alias: str, target: str, entry: Mapping[str, Any], info: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {**model_object(entry, alias, info), "alias_for": target}


def not_found(model_id: str) -> ModelNotFound:
    return ModelNotFound(
        f"The model '{model_id}' does not exist on this Ollama server "
        f"(pull it with: ollama pull {model_id}).",
        param="model",
    )
