"""Hostile input, generated: every route gets thousands of malformed bodies and odd headers.

What must hold for each one: no 5xx of our own making (the test Ollama is up, so any 5xx is a
bug), every error body in the OpenAI shape, and an answer within the time limit.
"""

from __future__ import annotations

import http.client
import string
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fake_ollama import FakeOllama

ROUTES = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/responses/resp_123"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/llama3.2"),
    ("POST", "/v1/models"),
    ("GET", "/healthz"),
]
MODELS = st.sampled_from(["llama3.2", "qwen3:8b", "nomic-embed-text", "nope", "", "a" * 300])
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(["", "\u0000", "\u202e", "🦙" * 50, "x" * 5000, "data:image/png;base64,!!"])
SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-5, max_value=100)
    | st.floats(min_value=-3, max_value=3)
    | st.sampled_from(["", "auto", "none", "required", "json", "base64", "float", "high"])
)
JSON: Any = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "model",
        "messages",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "n",
        "tools",
        "tool_choice",
        "response_format",
        "logprobs",
        "top_logprobs",
        "reasoning_effort",
        "options",
        "num_ctx",
        "keep_alive",
        "think",
        "format",
        "prompt",
        "suffix",
        "echo",
        "input",
        "encoding_format",
        "dimensions",
        "functions",
        "function_call",
        "parallel_tool_calls",
        "modalities",
        "audio",
        "best_of",
    ]
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "developer", "x"])},
    optional={
        "content": JSON,
        "tool_calls": JSON,
        "tool_call_id": JSON,
        "name": JSON,
        "reasoning_content": JSON,
    },
)
VALID = {
    "model": "llama3.2",
    "messages": [{"role": "user", "content": "hi"}],
    "prompt": "hi",
    "input": "hi",
}


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "messages", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return orjson.dumps(draw(JSON))
    body: dict[str, Any] = dict(VALID)
    body["model"] = draw(MODELS)
    if kind == "messages":
        body["messages"] = draw(st.lists(MESSAGE, max_size=4))
    for field in draw(st.lists(FIELDS, min_size=1, max_size=6)):
        body[field] = draw(SCALAR | JSON)
    if draw(st.booleans()):
        body.pop(draw(st.sampled_from(sorted(body))), None)
    return orjson.dumps(body)


HEADER_NAMES = st.text(alphabet=string.ascii_letters + "-", min_size=1, max_size=20)
HEADER_VALUES = st.text(alphabet=string.printable.strip("\r\n\x0b\x0c"), max_size=60)
HEADERS = st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=3) | st.sampled_from(
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/json; charset=latin-1"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Accept": "text/event-stream"},
        {"Transfer-Encoding": "chunked"},
    ]
)
FORBIDDEN = {"content-length", "host", "transfer-encoding", "connection", "expect", "upgrade"}
COUNT = {"tried": 0}


def call(url: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    safe = {k: v for k, v in headers.items() if k.lower() not in FORBIDDEN}
    try:
        conn.request(method, path, body=body if method == "POST" else None, headers=safe)
        resp = conn.getresponse()
        data = resp.read()  # a stream must end too: a hang fails on the timeout
        status = resp.status
        content_type = resp.getheader("Content-Type", "")
    finally:
        conn.close()
    COUNT["tried"] += 1
    assert status < 500, (status, data[:300])
    if status >= 400:
        error = orjson.loads(data)["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str)
        assert error["message"]
    elif content_type.startswith("text/event-stream"):
        # Chat streams are bare ``data:`` events; Responses streams name each event first.
        events = [
            e.split(b"\n", 1)[-1] if e.startswith(b"event: ") else e
            for e in data.split(b"\n\n")
            if e and not e.startswith(b":")
        ]
        assert all(e.startswith(b"data: ") for e in events)
        last = events[-1]
        ended = (b"data: [DONE]", b'"response.completed"', b'"response.incomplete"', b'"error"')
        assert last == ended[0] or any(mark in last for mark in ended[1:]), last[:300]
    else:
        orjson.loads(data)


@pytest.mark.timeout(300)
def test_thousands_of_hostile_requests(base_url: str, ollama: FakeOllama) -> None:
    root = base_url.removesuffix("/v1")

    @settings(
        max_examples=2500,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(route=st.sampled_from(ROUTES), body=bodies(), headers=HEADERS)
    def check(route: tuple[str, str], body: bytes, headers: dict[str, str]) -> None:
        method, path = route
        call(root, method, path, body, headers)

    check()
    print(f"\nhostile requests tried: {COUNT['tried']}")
    assert COUNT["tried"] >= 2500
