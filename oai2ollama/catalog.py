"""What Ollama has, cached briefly, and the routing of a requested name to a local model.

``/api/tags`` is cached for a few seconds (to tell unknown names for the default model) and
``/api/show`` per model for longer (for ``num_ctx = "auto"`` and the model list's extra fields),
so the hot path makes no extra call once the cache is warm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

from . import policy as rules
from .errors import APIError, InvalidRequest
from .policy import ModelPolicy
from .translate.models import context_length_of
from .upstream import Ollama

log = logging.getLogger("oai2ollama")

TAGS_TTL = 5.0
SHOW_TTL = 600.0
SHOW_CACHE_SIZE = 256


class Catalog:
    def __init__(self, ollama: Ollama, policy: ModelPolicy) -> None:
        self.ollama = ollama
        self.policy = policy
        self._plain = policy == ModelPolicy()  # no aliases, no defaults: nothing to do per call
        self._tags: tuple[float, dict[str, Any]] | None = None
        self._show: dict[str, tuple[float, dict[str, Any]]] = {}

    async def tags(self, *, fresh: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        if fresh or self._tags is None or now - self._tags[0] > TAGS_TTL:
            tags = await self.ollama.get("/api/tags")
            self._tags = (now, tags if isinstance(tags, dict) else {})
        return self._tags[1]

    def cached_show(self, model: str) -> dict[str, Any] | None:
        hit = self._show.get(model)
        return hit[1] if hit else None

    async def show(self, model: str) -> dict[str, Any] | None:
        """``/api/show`` for ``model``, cached; None when Ollama cannot say."""
        now = time.monotonic()
        hit = self._show.get(model)
        if hit and now - hit[0] < SHOW_TTL:
            return hit[1]
        try:
            info = await self.ollama.post("/api/show", {"model": model}, model=model)
        except APIError as err:
            log.debug("no /api/show for %s: %s", model, err.message)
            return None
        if not isinstance(info, dict):
            return None
        info.pop("tensors", None)  # large, and never needed here
        if len(self._show) >= SHOW_CACHE_SIZE:
            self._show.pop(next(iter(self._show)))
        self._show[model] = (now, info)
        return info

    async def has(self, model: str) -> bool:
        try:
            tags = await self.tags()
        except APIError:
            return True  # cannot tell; let the request itself report what is wrong
        names = {m.get("model") for m in tags.get("models") or () if isinstance(m, dict)}
        names |= {m.get("name") for m in tags.get("models") or () if isinstance(m, dict)}
        return model in names or f"{model}:latest" in names

    async def route(self, requested: str) -> str:
        """The local model that answers ``requested``: an alias, the name itself, or the default."""
        target = self.policy.alias(requested)
        if target is not None:
            return target
        if self.policy.default_model and not await self.has(requested):
            return self.policy.default_model
        return requested

    async def require(self, requested: str, needs: Collection[str]) -> None:
        """Refuse up front (400) a request that needs capabilities its model lacks, as told by
        the cached ``/api/show``. When Ollama cannot say, the request goes on and Ollama judges."""
        if not needs:
            return
        target = requested if self._plain else await self.route(requested)
        info = await self.show(target)
        capabilities = info.get("capabilities") if info else None
        if not isinstance(capabilities, list):
            return
        missing = [need for need in needs if need not in capabilities]
        if missing:
            raise missing_capability(requested, target, missing, capabilities)

    async def prepare(self, payload: dict[str, Any], requested: str) -> str:
        """Point ``payload`` at the local model and apply its profile; returns that model."""
        if self._plain:
            return requested
        target = await self.route(requested)
        payload["model"] = target
        profile = self.policy.profile(target)
        context = None
        if rules.needs_context_length(self.policy, profile, payload):
            info = await self.show(target)
            context = context_length_of(info) if info else None
        rules.apply(payload, self.policy, profile, context)
        return target


INPUTS = {"audio": "audio input", "vision": "image input"}


def missing_capability(
    requested: str, target: str, missing: list[str], capabilities: list[Any]
) -> InvalidRequest:
    what = " and ".join(INPUTS.get(need, need) for need in sorted(missing))
    served = f" (served by '{target}')" if target != requested else ""
    has = ", ".join(str(c) for c in capabilities) or "none"
    return InvalidRequest(
        f"The model '{requested}'{served} does not support {what}: its capabilities are {has}. "
        f"Use a model with the {' and '.join(repr(m) for m in sorted(missing))} capability.",
        param="model",
        code="model_not_supported",
    )
