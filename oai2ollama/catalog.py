"""What Ollama has, cached briefly, and the routing of a requested name to a local model.

``/api/tags`` is cached for a few seconds (to tell unknown names for the default model) and
``/api/show`` per model for longer (for ``num_ctx = "auto"`` and the model list's extra fields),
so the hot path makes no extra call once the cache is warm.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import policy as rules
from .errors import APIError
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
