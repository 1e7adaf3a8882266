"""A small, bounded, in-memory store of Responses, for ``previous_response_id`` and
``GET /v1/responses/{id}``.

The trade-off, documented for operators: it lives in this process only (a restart forgets it),
it keeps the newest responses up to a count and a byte budget (oldest dropped first), and it holds
prompts in memory. ``--responses-store 0`` turns it off and makes the server stateless.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Stored:
    response: dict[str, Any]  # the response object as it was answered
    items: list[dict[str, Any]]  # the conversation up to and including this response's output
    size: int


class ResponseStore:
    def __init__(self, max_count: int, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Stored] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_count > 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        items = input_items + list(response.get("output") or [])
        size = len(orjson.dumps(items)) + len(orjson.dumps(response))
        if size > self.max_bytes:
            return
        self.delete(response["id"])
        self._entries[response["id"]] = Stored(response, items, size)
        self._bytes += size
        while len(self._entries) > self.max_count or self._bytes > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size

    def get(self, response_id: str) -> Stored | None:
        entry = self._entries.get(response_id)
        if entry is not None:
            self._entries.move_to_end(response_id)
        return entry

    def delete(self, response_id: str) -> bool:
        entry = self._entries.pop(response_id, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        return True
