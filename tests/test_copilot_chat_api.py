"""VS Code Copilot Chat's Ollama provider, replayed as its source sends it, with and without
keys; and which routes ``--open-discovery`` opens.

The provider (``src/extension/byok/vscode-node/ollamaProvider.ts``) checks ``GET /api/version``
(at least 0.6.4, or ``0.0.0``), lists ``GET /api/tags`` (``models[].model``), asks
``POST /api/show`` for each model (``capabilities``, and
``model_info["<general.architecture>.context_length"]`` as its budget, 32768 when missing), all
without a key. Chats then go to ``/v1/chat/completions`` through ``OpenAIEndpoint``: the body of
``createCapiRequestBody`` with the fetcher's post options (``temperature``, ``top_p``, ``n``,
``stream: true``), shaped by ``interceptBody`` (``max_tokens`` removed, empty tool parameters
filled in, ``stream_options.include_usage``), with the headers of ``networkRequest``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import orjson
import pytest

from oai2ollama.policy import ModelPolicy, Profile

from .conftest import ShimFactory
from .fake_ollama import FakeOllama, Reply

COPILOT_UA = "GitHubCopilotChat/0.32.2"
MINIMUM_VERSION = "0.6.4"
POLICY = ModelPolicy(
    defaults=Profile(num_ctx=16384),
    models=(("qwen3*", Profile(num_ctx="auto")),),
    aliases=(("copilot-coder", "qwen3:8b"),),
    max_num_ctx=24576,
)
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read the contents of a file.",
            "parameters": {
                "type": "object",
                "properties": {
                    "filePath": {"type": "string", "description": "The absolute path."},
                    "startLine": {"type": "number"},
                    "endLine": {"type": "number"},
                },
                "required": ["filePath", "startLine", "endLine"],
            },
        },
    },
    # A tool without parameters: interceptBody fills in an empty object schema.
    {
        "type": "function",
        "function": {
            "name": "get_changed_files",
            "description": "Get git diffs of current file changes.",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]


def version_supported(version: str) -> bool:
    """``_isVersionSupported``: ``0.0.0`` passes; else numeric parts against the minimum."""
    if version == "0.0.0":
        return True
    current = [_int(p) for p in version.split(".")]
    minimum = [int(p) for p in MINIMUM_VERSION.split(".")]
    for i in range(max(len(current), len(minimum))):
        have = current[i] if i < len(current) else 0
        need = minimum[i] if i < len(minimum) else 0
        if have != need:
            return have > need
    return True


def _int(part: str) -> int:
    digits = ""
    for ch in part:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits or 0)


def budget(info: dict[str, Any]) -> dict[str, Any]:
    """``_getOllamaModelInfo``: the context window, split into prompt and output tokens."""
    model_info = info.get("model_info") or {}
    context = model_info.get(f"{model_info.get('general.architecture')}.context_length")
    if context is None:
        context = 32768
    output = context // 2 if context < 4096 else 4096
    return {
        "maxInputTokens": context - output,
        "maxOutputTokens": output,
        "toolCalling": "tools" in info["capabilities"],
        "vision": "vision" in info["capabilities"],
    }


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, bytes]:
    data = orjson.dumps(body) if body is not None else None
    all_headers = {"User-Agent": COPILOT_UA, **(headers or {})}
    async with session.request(method, url, headers=all_headers, data=data) as resp:
        return resp.status, await resp.read()


def chat_body(model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """What reaches the wire for a BYOK chat: post options, then ``interceptBody``."""
    body: dict[str, Any] = {
        "messages": messages,
        "model": model,
        "temperature": 0.1,
        "top_p": 1,
        "max_tokens": 4096,
        "n": 1,
        "stream": True,
        "tools": TOOLS,
    }
    del body["max_tokens"]  # "Removing max tokens defaults to the maximum"
    body["stream_options"] = {"include_usage": True}
    return body


def chat_headers(key: str) -> dict[str, str]:
    request_id = str(uuid.uuid4())
    return {
        "Authorization": f"Bearer {key}",
        "X-Request-Id": request_id,
        "OpenAI-Intent": "conversation-other",
        "X-GitHub-Api-Version": "2025-05-01",
        "Content-Type": "application/json",
        "X-Interaction-Type": "conversation-other",
        "X-Agent-Task-Id": request_id,
    }


def sse(data: bytes) -> list[Any]:
    events = []
    for block in data.decode().split("\n\n"):
        if block.startswith("data: "):
            payload = block.removeprefix("data: ")
            events.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return events


async def copilot_session(url: str, key: str) -> dict[str, Any]:
    """Discovery, then a streamed agent turn with a tool call and its follow-up."""
    async with aiohttp.ClientSession() as session:
        status, raw = await fetch(session, "GET", f"{url}/api/version")
        assert status == 200, raw
        assert version_supported(orjson.loads(raw)["version"])
        status, raw = await fetch(session, "GET", f"{url}/api/tags")
        assert status == 200, raw
        known: dict[str, dict[str, Any]] = {}
        for model in orjson.loads(raw)["models"]:
            status, raw = await fetch(
                session,
                "POST",
                f"{url}/api/show",
                {"Content-Type": "application/json"},
                {"model": model["model"]},
            )
            assert status == 200, raw
            known[model["model"]] = budget(orjson.loads(raw))

        turns: dict[str, Any] = {"known": known}
        for model in ("llama3.2:latest", "copilot-coder"):
            assert known[model]["toolCalling"]
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": "You are an expert AI programming assistant."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "What does main.py do?"}],
                    "copilot_cache_control": {"type": "ephemeral"},
                },
            ]
            status, raw = await fetch(
                session,
                "POST",
                f"{url}/v1/chat/completions",
                chat_headers(key),
                chat_body(model, messages),
            )
            first = sse(raw)
            assert status == 200, raw
            calls = [
                call
                for event in first
                if isinstance(event, dict) and event["choices"]
                for call in event["choices"][0]["delta"].get("tool_calls") or []
            ]
            messages += [
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"id": c["id"], "type": "function", "function": c["function"]}
                        for c in calls
                    ],
                },
                {
                    "role": "tool",
                    "content": [{"type": "text", "text": "print('hello')"}],
                    "tool_call_id": calls[0]["id"],
                },
            ]
            status, raw = await fetch(
                session,
                "POST",
                f"{url}/v1/chat/completions",
                chat_headers(key),
                chat_body(model, messages),
            )
            assert status == 200, raw
            turns[model] = (first, calls, sse(raw))
        return turns


def check_turns(turns: dict[str, Any], ollama: FakeOllama) -> None:
    known = turns["known"]
    assert set(known) >= {"llama3.2:latest", "qwen3:8b", "copilot-coder"}
    for model, first_window in (("llama3.2:latest", 16384), ("copilot-coder", 24576)):
        first, calls, second = turns[model]
        window = known[model]["maxInputTokens"] + known[model]["maxOutputTokens"]
        assert window == first_window
        assert [c["function"]["name"] for c in calls] == ["read_file"]
        assert orjson.loads(calls[0]["function"]["arguments"]) == {
            "filePath": "/src/main.py",
            "startLine": 1,
            "endLine": 40,
        }
        finish = [c["finish_reason"] for e in first if isinstance(e, dict) for c in e["choices"]]
        assert "tool_calls" in finish
        usage = [e["usage"] for e in first if isinstance(e, dict) and e.get("usage")]
        assert usage
        assert usage[-1]["prompt_tokens"] == 12
        assert first[-1] == "[DONE]"
        text = "".join(
            e["choices"][0]["delta"].get("content") or ""
            for e in second
            if isinstance(e, dict) and e["choices"]
        )
        assert text == "It prints hello."
        assert second[-1] == "[DONE]"
    # What Copilot budgets from /api/show is the num_ctx Ollama is sent.
    chats = [r.body for r in ollama.requests if r.path == "/api/chat"]
    assert [c["options"]["num_ctx"] for c in chats] == [16384, 16384, 24576, 24576]
    assert [c["model"] for c in chats] == ["llama3.2:latest"] * 2 + ["qwen3:8b"] * 2
    tool = chats[1]["messages"][-1]
    assert tool["role"] == "tool"
    assert tool["content"] == "print('hello')"
    for recorded in ollama.requests:
        assert "authorization" not in {k.lower() for k in recorded.headers}


def queue_turns(ollama: FakeOllama) -> None:
    call = {
        "function": {
            "name": "read_file",
            "arguments": {"filePath": "/src/main.py", "startLine": 1, "endLine": 40},
        }
    }
    for _ in range(2):
        ollama.queue(Reply(content="", tool_calls=[call]), Reply(content="It prints hello."))


def test_copilot_without_keys(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    url = make_shim(policy=POLICY).removesuffix("/v1")
    queue_turns(ollama)
    # No key configured in Copilot: it still sends "Authorization: Bearer ".
    check_turns(asyncio.run(copilot_session(url, "")), ollama)


def test_copilot_with_a_key_and_open_discovery(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    url = make_shim(policy=POLICY, api_keys=("team-key",), open_discovery=True).removesuffix("/v1")
    queue_turns(ollama)
    check_turns(asyncio.run(copilot_session(url, "team-key")), ollama)


def test_copilot_with_a_key_needs_open_discovery(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    """Without it, the keyless version check fails, and Copilot reports Ollama as not running."""
    url = make_shim(policy=POLICY, api_keys=("team-key",)).removesuffix("/v1")
    with pytest.raises(AssertionError, match="Missing API key"):
        asyncio.run(copilot_session(url, "team-key"))


def test_copilot_sees_ollamas_own_version(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    """The version is Ollama's, passed through: an Ollama too old for Copilot is reported as
    such, and a development build (``0.0.0``) passes."""
    url = make_shim(policy=POLICY).removesuffix("/v1")
    try:
        for version, supported in (("0.6.3", False), ("0.6.4", True), ("0.0.0", True)):
            ollama.version = version
            status, raw = send("GET", url + "/api/version", None, {})
            assert status == 200
            assert version_supported(orjson.loads(raw)["version"]) is supported
        queue_turns(ollama)
        check_turns(asyncio.run(copilot_session(url, "")), ollama)
    finally:
        ollama.version = FakeOllama().version


# ---- --open-discovery opens exactly the discovery routes ---------------------------------


OPEN = [
    ("GET", "/api/version", None),
    ("GET", "/api/tags", None),
    ("POST", "/api/show", {"model": "llama3.2"}),
    ("GET", "/", None),
    ("HEAD", "/", None),
]
CLOSED = [
    ("GET", "/api/ps", None),
    ("HEAD", "/api/tags", None),
    ("POST", "/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}),
    ("POST", "/api/generate", {"model": "llama3.2", "prompt": "x"}),
    ("POST", "/api/embed", {"model": "nomic-embed-text", "input": "x"}),
    ("POST", "/api/pull", {"model": "phi4"}),
    ("GET", "/v1/models", None),
    ("GET", "/metrics", None),
]


def send(method: str, url: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
    async def run() -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session:
            return await fetch(session, method, url, headers, body)

    return asyncio.run(run())


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Bearer"])
def test_open_discovery_opens_only_discovery(
    make_shim: ShimFactory, ollama: FakeOllama, authorization: str | None
) -> None:
    url = make_shim(api_keys=("k",), open_discovery=True).removesuffix("/v1")
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path, body in OPEN:
        status, raw = send(method, url + path, body, headers)
        assert status == 200, (method, path, raw)
    for method, path, body in CLOSED:
        status, raw = send(method, url + path, body, headers)
        assert status == 401, (method, path)
        if method != "HEAD":
            assert b"Missing API key" in raw
    # A key that is sent must be right, even where none is needed.
    assert send("GET", url + "/api/tags", None, {"Authorization": "Bearer wrong"})[0] == 401
    assert send("GET", url + "/api/ps", None, {"Authorization": "Bearer k"})[0] == 200


def test_without_open_discovery_every_route_needs_the_key(
    make_shim: ShimFactory, ollama: FakeOllama
) -> None:
    url = make_shim(api_keys=("k",)).removesuffix("/v1")
    for method, path, body in OPEN:
        status, raw = send(method, url + path, body, {"Authorization": "Bearer "})
        assert status == 401, (method, path)
        if method != "HEAD":
            assert orjson.loads(raw) == {
                "error": "Missing API key. Send it in the Authorization header as 'Bearer <key>'."
            }
        assert send(method, url + path, body, {"Authorization": "Bearer k"})[0] == 200
    # The OpenAI face answers the same refusal in its own shape.
    status, raw = send("GET", url + "/v1/models", None, {"Authorization": "Bearer "})
    assert status == 401
    assert orjson.loads(raw)["error"]["code"] == "invalid_api_key"
