"""What streamed and whole answers share: ids, token usage, and the SSE framing of one choice."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import orjson


def new_id(prefix: str) -> str:
    """A unique, unguessable id such as ``chatcmpl-3f9a…`` (Ollama's own layer repeats ids)."""
    return prefix + secrets.token_hex(12)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def usage_from(answer: Mapping[str, Any]) -> dict[str, int]:
    """Ollama omits zero counters (``omitempty``), so a missing one is 0."""
    return usage(answer.get("prompt_eval_count") or 0, answer.get("eval_count") or 0)


class ChoiceStream:
    """The SSE framing shared by streamed chat and text completions, for one choice.

    The parts every event shares (id, object, created, model, index) are serialised once; an
    event then costs one join of bytes around the choice's new value.
    """

    __slots__ = ("_close", "_head", "_open", "_plain", "_solo", "done", "include_usage", "usage")

    def __init__(
        self,
        *,
        completion_id: str,
        obj: str,
        created: int,
        model: str,
        index: int,
        key: str,
        include_usage: bool,
        solo: bool,
    ) -> None:
        head = orjson.dumps(
            {"id": completion_id, "object": obj, "created": created, "model": model}
        )
        self._head = b"data: " + head[:-1] + b',"choices":'
        self._open = self._head + b'[{"index":%d,"%s":' % (index, key.encode())
        self.include_usage = include_usage
        self._close = b"}]" + (b',"usage":null}\n\n' if include_usage else b"}\n\n")
        self._plain = b',"logprobs":null,"finish_reason":null' + self._close
        self._solo = solo  # a single choice: this stream also writes the end
        self.done = False
        self.usage = usage(0, 0)

    def _event(
        self, value: bytes, finish: str | None = None, logprobs: bytes | None = None
    ) -> bytes:
        if finish is None and logprobs is None:
            return self._open + value + self._plain  # the common case: one delta
        fr = b"null" if finish is None else b'"' + finish.encode() + b'"'
        return (
            self._open
            + value
            + b',"logprobs":'
            + (logprobs or b"null")
            + b',"finish_reason":'
            + fr
            + self._close
        )

    def end(self, total: dict[str, int]) -> bytes:
        """The close of the whole stream: the usage chunk if asked for, then ``[DONE]``."""
        out = b"data: [DONE]\n\n"
        if self.include_usage:
            out = self._head + b'[],"usage":' + orjson.dumps(total) + b"}\n\n" + out
        return out

    def _finished(self, chunk: dict[str, Any], finish: str) -> bytes:
        self.done = True
        self.usage = usage_from(chunk)
        out = self._event(self._empty, finish)
        if self._solo:
            out += self.end(self.usage)
        return out

    _empty = b"{}"
