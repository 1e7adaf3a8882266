"""Models: Ollama ``/api/tags`` → OpenAI ``/v1/models`` and ``/v1/models/{id}``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import ModelNotFound


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


def model_object(entry: dict[str, Any], model_id: str | None = None) -> dict[str, Any]:
    name = entry.get("model") or entry.get("name") or ""
    return {
        "id": model_id or name,
        "object": "model",
        "created": created_from(entry.get("modified_at")),
        "owned_by": owned_by(name),
    }


def _entries(tags: Any) -> list[dict[str, Any]]:
    models = tags.get("models") if isinstance(tags, dict) else None
    return [m for m in models or () if isinstance(m, dict)]


def model_list(tags: Any) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in _entries(tags)]}


def find_model(tags: Any, model_id: str) -> dict[str, Any]:
    """The model called ``model_id``; a name without a tag means ``:latest``, as in Ollama."""
    wanted = {model_id} if ":" in model_id.rsplit("/", 1)[-1] else {model_id, f"{model_id}:latest"}
    for entry in _entries(tags):
        if entry.get("model") in wanted or entry.get("name") in wanted:
            return model_object(entry, model_id)
    raise ModelNotFound(
        f"The model '{model_id}' does not exist on this Ollama server "
        f"(pull it with: ollama pull {model_id}).",
        param="model",
    )
