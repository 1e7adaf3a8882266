"""Reading Ollama's NDJSON: lines reassembled across reads in linear time, and one line's size
capped with a clear error (in a stream, a final error event)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from oai2ollama.config import Settings
from oai2ollama.errors import UpstreamError
from oai2ollama.upstream import Ollama

from .conftest import ShimFactory
from .fake_ollama import FakeOllama, Reply


class Pieces:
    """Stands in for a response body that arrives in small reads."""

    def __init__(self, data: bytes, size: int) -> None:
        self._pieces = [data[i : i + size] for i in range(0, len(data), size)]
        self._pieces.reverse()

    async def readany(self) -> bytes:
        return self._pieces.pop() if self._pieces else b""


class Body:
    def __init__(self, data: bytes, size: int) -> None:
        self.content = Pieces(data, size)


def read_lines(data: bytes, size: int, **settings: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        ollama = Ollama(Settings(**settings))
        return [obj async for batch in ollama._batches(Body(data, size)) for obj in batch]  # type: ignore[arg-type]

    return asyncio.run(run())


def test_lines_split_across_reads_are_put_back_together() -> None:
    lines = [{"n": i, "text": "é" * (i % 7)} for i in range(300)]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    for size in (1, 3, 64, 1000, len(data)):
        assert read_lines(data, size) == lines
    assert read_lines(data.rstrip(b"\n"), 5) == lines  # no newline after the last line


def test_a_long_line_in_small_reads_takes_linear_time() -> None:
    big = {"message": {"content": "x" * (4 * 1024 * 1024)}, "done": False}
    data = orjson.dumps(big) + b"\n" + orjson.dumps({"done": True}) + b"\n"
    started = time.perf_counter()
    objects = read_lines(data, 1024, max_line_size=64 * 1024 * 1024)
    elapsed = time.perf_counter() - started
    assert objects == [big, {"done": True}]
    assert elapsed < 2.0, f"{elapsed:.2f}s for 4 MB in 1 KB reads"


@pytest.mark.parametrize("size", [100, 5000, 70_000])
def test_a_line_over_the_limit_is_refused(size: int) -> None:
    data = orjson.dumps({"pad": "x" * 60_000}) + b"\n"
    with pytest.raises(UpstreamError) as info:
        read_lines(data, size, max_line_size=50_000)
    assert info.value.code == "upstream_line_too_long"
    assert "50000" in info.value.message
    assert "--max-line-size" in info.value.message


def test_a_line_over_the_limit_ends_a_stream_with_an_error_event(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    import openai

    url = make_shim(max_line_size=16_384)
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    ollama.queue(Reply(content="fine " + "y" * 40_000))
    with pytest.raises(openai.APIError) as info:
        for _ in client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass
    assert "16384" in info.value.message
    assert info.value.code == "upstream_line_too_long"  # type: ignore[attr-defined]
    # Below the limit, the same text streams whole.
    ollama.queue(Reply(content="fine " + "y" * 4_000))
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        if chunk.choices
    )
    assert text == "fine " + "y" * 4_000
