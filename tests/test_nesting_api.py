"""JSON nested deeper than the server can write back is refused with a 400 naming the field,
before anything reaches Ollama. (orjson reads 1024 levels but writes only 254.)"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from oai2ollama.errors import InvalidRequest
from oai2ollama.translate.validate import MAX_DEPTH, check_depth

from .fake_ollama import FakeOllama


def deep(levels: int) -> str:
    """A JSON object nested ``levels`` deep, as text (orjson cannot write it)."""
    return '{"a":' * (levels - 1) + '{"type": "object"}' + "}" * (levels - 1)


def post(url: str, raw: str) -> tuple[int, Any]:
    async def run() -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=raw.encode(), headers={"Content-Type": "application/json"}) as r,
        ):
            answer = await r.read()
            json = r.content_type == "application/json"
            return r.status, orjson.loads(answer) if json else answer

    return asyncio.run(run())


USER = '[{"role": "user", "content": "hi"}]'
CALL = (
    '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": '
    '[{"id": "c1", "type": "function", "function": {"name": "f", "arguments": ARGS}}]}, '
    '{"role": "tool", "tool_call_id": "c1", "content": "ok"}]'
)

CASES = [
    (
        "chat/completions",
        '{"model": "llama3.2", "messages": USER, "format": DEEP}',
        "format",
    ),
    (
        "chat/completions",
        '{"model": "llama3.2", "messages": USER, "response_format": {"type": "json_schema", '
        '"json_schema": {"name": "x", "schema": DEEP}}}',
        "response_format.json_schema.schema",
    ),
    (
        "chat/completions",
        '{"model": "llama3.2", "messages": USER, "tools": [{"type": "function", '
        '"function": {"name": "f", "parameters": DEEP}}]}',
        "tools[0].function.parameters",
    ),
    (
        "chat/completions",
        '{"model": "llama3.2", "stream": true, "messages": ' + CALL.replace("ARGS", "DEEP") + "}",
        "messages[1].tool_calls[0].function.arguments",
    ),
    (
        "chat/completions",
        '{"model": "llama3.2", "messages": ' + CALL.replace("ARGS", "DEEP_STRING") + "}",
        "messages[1].tool_calls[0].function.arguments",
    ),
    (
        "completions",
        '{"model": "llama3.2", "prompt": "hi", "format": DEEP}',
        "format",
    ),
    (
        "responses",
        '{"model": "llama3.2", "input": "hi", "metadata": DEEP}',
        "metadata",
    ),
    (
        "responses",
        '{"model": "llama3.2", "input": "hi", "stream": true, "metadata": DEEP}',
        "metadata",
    ),
    (
        "responses",
        '{"model": "llama3.2", "input": "hi", "text": {"format": {"type": "json_schema", '
        '"name": "x", "schema": DEEP}}}',
        "text.format.schema",
    ),
    (
        "responses",
        '{"model": "llama3.2", "input": "hi", "tools": [{"type": "function", "name": "f", '
        '"parameters": DEEP}]}',
        "tools[0].parameters",
    ),
    (
        "responses",
        '{"model": "llama3.2", "input": [{"role": "user", "content": "hi", "x": DEEP}]}',
        "input",
    ),
]


IDS = [f"{i}-{route}-{param}" for i, (route, _, param) in enumerate(CASES)]


@pytest.mark.parametrize(("route", "template", "param"), CASES, ids=IDS)
@pytest.mark.parametrize("levels", [300, 1000])
def test_too_deep_is_400_naming_the_field(
    base_url: str, ollama: FakeOllama, route: str, template: str, param: str, levels: int
) -> None:
    raw = template.replace("DEEP_STRING", orjson.dumps(deep(levels)).decode()).replace(
        "DEEP", deep(levels)
    )
    raw = raw.replace("USER", USER)
    status, body = post(f"{base_url}/{route}", raw)
    assert status == 400, body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert body["error"]["code"] == "nested_too_deep"
    assert "levels deep" in body["error"]["message"]
    assert [r.path for r in ollama.requests if r.path != "/api/tags"] == []


@pytest.mark.parametrize(("route", "template", "param"), CASES, ids=IDS)
def test_deep_but_writable_passes(
    base_url: str, ollama: FakeOllama, route: str, template: str, param: str
) -> None:
    raw = template.replace("DEEP_STRING", orjson.dumps(deep(MAX_DEPTH)).decode())
    raw = raw.replace("DEEP", deep(MAX_DEPTH)).replace("USER", USER)
    status, body = post(f"{base_url}/{route}", raw)
    assert status == 200, body


def test_check_depth_counts_containers_only() -> None:
    check_depth("x" * 10_000, "p")
    check_depth(orjson.loads(deep(MAX_DEPTH)), "p")
    check_depth([[1]] * 1000, "p")
    with pytest.raises(InvalidRequest) as info:
        check_depth([orjson.loads(deep(MAX_DEPTH))], "p")
    assert info.value.param == "p"
