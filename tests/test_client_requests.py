"""Real clients' requests, and every tool shape of the Responses API.

The bodies in ``tests/clients/`` were recorded on the wire from Codex CLI and the Continue CLI;
each is replayed as it is (only the model is one the test Ollama has). What comes back is checked
against the ``openai`` package's own types.
"""

from __future__ import annotations

import json
import typing
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel

from oai2ollama.config import Settings
from oai2ollama.translate import responses

from .conftest import ShimFactory
from .fake_ollama import FakeOllama, Reply

RECORDED = Path(__file__).parent / "clients"


def _event_types() -> dict[str, type[BaseModel]]:
    """The SDK's class for each Responses stream event ``type``."""
    (union, *_) = typing.get_args(ResponseStreamEvent)
    found = {}
    for cls in typing.get_args(union):
        for name in typing.get_args(cls.model_fields["type"].annotation):
            found[name] = cls
    return found


EVENT_TYPES = _event_types()
WARNING = "X-Oai2ollama-Warning"


def recorded(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return body


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, data=orjson.dumps(body), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def response_events(raw: bytes) -> list[dict[str, Any]]:
    """A Responses stream's events, each checked against the SDK's event types."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        name, data = block.split("\n", 1)
        assert name.startswith("event: ")
        assert data.startswith("data: ")
        event = orjson.loads(data[len("data: ") :])
        assert event["type"] == name[len("event: ") :]
        EVENT_TYPES[event["type"]].model_validate(event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def chat_chunks(raw: bytes) -> list[dict[str, Any]]:
    """A chat stream's chunks, each checked against the SDK's type; it must end with [DONE]."""
    blocks = [b for b in raw.decode().split("\n\n") if b.strip() and not b.startswith(":")]
    assert blocks[-1] == "data: [DONE]"
    chunks = []
    for block in blocks[:-1]:
        assert block.startswith("data: ")
        chunk = orjson.loads(block[len("data: ") :])
        ChatCompletionChunk.model_validate(chunk)
        chunks.append(chunk)
    return chunks


@pytest.fixture
def tools_ollama(ollama: FakeOllama) -> FakeOllama:
    """The test Ollama, with the models the recordings name."""
    for name in ("llama3.2:1b", "tooly:latest"):
        ollama.models[name] = ["completion", "tools"]
    return ollama


# ---- the recorded requests -----------------------------------------------------------------


def test_codex_first_request_is_served(base_url: str, tools_ollama: FakeOllama) -> None:
    body = recorded("codex_first.json")
    tools_ollama.queue(Reply(content="Hello! What shall we work on?", thinking="A greeting."))
    status, headers, raw = post(f"{base_url}/responses", body)
    assert status == 200, raw
    assert headers[WARNING].startswith("tools-ignored; types=web_search;")
    events = response_events(raw)
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    final = Response.model_validate(events[-1]["response"])
    assert final.output_text == "Hello! What shall we work on?"
    assert [item.type for item in final.output] == ["reasoning", "message"]

    sent = tools_ollama.last().body
    names = [t["function"]["name"] for t in sent["tools"]]
    namespace = next(t for t in body["tools"] if t["type"] == "namespace")
    inner = [f"multi_agent_v1__{t['name']}" for t in namespace["tools"]]
    plain = [t["name"] for t in body["tools"] if t["type"] == "function"]
    assert sorted(names) == sorted(plain + inner)
    assert [m["role"] for m in sent["messages"]] == ["system", "system", "user", "user"]
    assert sent["messages"][-1]["content"] == "Say hello"


def test_codex_follow_up_with_a_tool_result_is_served(
    base_url: str, tools_ollama: FakeOllama
) -> None:
    body = recorded("codex_tool_result.json")
    tools_ollama.queue(Reply(content="I could not get the weather."))
    status, headers, raw = post(f"{base_url}/responses", body)
    assert status == 200, raw
    assert WARNING not in headers
    events = response_events(raw)
    assert events[-1]["type"] == "response.completed"
    messages = tools_ollama.last().body["messages"]
    assert messages[-2:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                    "id": "call_ab12cd34",
                }
            ],
        },
        {
            "role": "tool",
            "content": "unsupported call: get_weather",
            "tool_name": "get_weather",
            "tool_call_id": "call_ab12cd34",
        },
    ]


@pytest.mark.parametrize("name", ["continue_first.json", "continue_tool_result.json"])
def test_continue_requests_are_served(base_url: str, tools_ollama: FakeOllama, name: str) -> None:
    body = recorded(name)
    tools_ollama.queue(Reply(content="Hello from the model"))
    status, _, raw = post(f"{base_url}/chat/completions", body)
    assert status == 200, raw
    chunks = chat_chunks(raw)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 19
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello from the model"
    sent = tools_ollama.last().body
    assert len(sent["tools"]) == len(body["tools"])


def test_codex_turn_with_a_namespaced_call_round_trip(
    base_url: str, tools_ollama: FakeOllama
) -> None:
    """The model calls a function inside Codex's namespace: the call goes back as Codex reads
    it, and Codex's follow-up with that call and its output reaches the model consistently."""
    first = recorded("codex_first.json")
    arguments = {"message": "look around", "agent_type": "explorer"}
    call = {"function": {"name": "multi_agent_v1__spawn_agent", "arguments": arguments}}
    tools_ollama.queue(Reply(content="", tool_calls=[call]))
    status, _, raw = post(f"{base_url}/responses", first)
    assert status == 200, raw
    events = response_events(raw)
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert len(done) == 1
    item = done[0]
    assert item["type"] == "function_call"
    assert (item["namespace"], item["name"]) == ("multi_agent_v1", "spawn_agent")
    assert json.loads(item["arguments"]) == arguments
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["namespace"] == "multi_agent_v1"
    args_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert args_done["name"] == "spawn_agent"

    follow_up = dict(first)
    follow_up["input"] = first["input"] + [
        {k: item[k] for k in ("type", "id", "status", "name", "namespace", "arguments", "call_id")},
        {"type": "function_call_output", "call_id": item["call_id"], "output": "agent started"},
    ]
    tools_ollama.queue(Reply(content="The agent is running."))
    status, _, raw = post(f"{base_url}/responses", follow_up)
    assert status == 200, raw
    assert response_events(raw)[-1]["type"] == "response.completed"
    messages = tools_ollama.last().body["messages"]
    assert messages[-2]["tool_calls"] == [
        {
            "function": {"name": "multi_agent_v1__spawn_agent", "arguments": arguments},
            "id": item["call_id"],
        }
    ]
    assert messages[-1] == {
        "role": "tool",
        "content": "agent started",
        "tool_name": "multi_agent_v1__spawn_agent",
        "tool_call_id": item["call_id"],
    }


# ---- namespaces, custom tools, hosted tools ------------------------------------------------

NAMESPACE = {
    "type": "namespace",
    "name": "crm",
    "description": "Customer records.",
    "tools": [
        {
            "type": "function",
            "name": "lookup",
            "description": "Find a customer",
            "parameters": {"type": "object", "properties": {"email": {"type": "string"}}},
        },
        {"type": "custom", "name": "note", "description": "Free-form note"},
    ],
}
PATCH_TOOL = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch"'},
}
PATCH = "*** Begin Patch\n*** End Patch"


def test_namespace_call_non_stream(base_url: str, ollama: FakeOllama) -> None:
    call = {"function": {"name": "crm__lookup", "arguments": {"email": "a@b.c"}}}
    ollama.queue(Reply(content="", tool_calls=[call]))
    body = {"model": "llama3.2", "input": "Who is a@b.c?", "tools": [NAMESPACE]}
    status, headers, raw = post(f"{base_url}/responses", body)
    assert status == 200
    assert WARNING not in headers
    out = Response.model_validate(orjson.loads(raw))
    [item] = out.output
    assert item.type == "function_call"
    assert (item.namespace, item.name, item.arguments) == ("crm", "lookup", '{"email":"a@b.c"}')
    sent = ollama.last().body["tools"]
    assert [t["function"]["name"] for t in sent] == ["crm__lookup", "crm__note"]
    assert sent[1]["function"]["parameters"]["required"] == ["input"]


def test_a_bare_name_inside_one_namespace_still_finds_it(base_url: str, ollama: FakeOllama) -> None:
    call = {"function": {"name": "lookup", "arguments": {"email": "a@b.c"}}}
    ollama.queue(Reply(content="", tool_calls=[call]))
    body = {"model": "llama3.2", "input": "Who?", "tools": [NAMESPACE]}
    status, _, raw = post(f"{base_url}/responses", body)
    assert status == 200
    item = Response.model_validate(orjson.loads(raw)).output[0]
    assert item.type == "function_call"
    assert (item.namespace, item.name) == ("crm", "lookup")


def test_custom_tool_round_trip(base_url: str, ollama: FakeOllama) -> None:
    call = {"function": {"name": "apply_patch", "arguments": {"input": PATCH}}}
    ollama.queue(Reply(content="", tool_calls=[call]))
    body: dict[str, Any] = {"model": "llama3.2", "input": "Fix it", "tools": [PATCH_TOOL]}
    status, _, raw = post(f"{base_url}/responses", body)
    assert status == 200
    out = Response.model_validate(orjson.loads(raw))
    [item] = out.output
    assert item.type == "custom_tool_call"
    assert (item.name, item.input) == ("apply_patch", PATCH)
    assert item.call_id.startswith("call_")
    [tool] = ollama.last().body["tools"]
    assert tool["function"]["parameters"]["properties"]["input"]["type"] == "string"
    assert 'start: "*** Begin Patch"' in tool["function"]["description"]

    body["input"] = [
        {"type": "message", "role": "user", "content": "Fix it"},
        orjson.loads(orjson.dumps(item.model_dump(exclude_none=True))),
        {"type": "custom_tool_call_output", "call_id": item.call_id, "output": "Done!"},
    ]
    ollama.queue(Reply(content="Patched."))
    status, _, raw = post(f"{base_url}/responses", body)
    assert status == 200, raw
    messages = ollama.last().body["messages"]
    assert messages[1]["tool_calls"] == [
        {"function": {"name": "apply_patch", "arguments": {"input": PATCH}}, "id": item.call_id}
    ]
    assert messages[2] == {
        "role": "tool",
        "content": "Done!",
        "tool_name": "apply_patch",
        "tool_call_id": item.call_id,
    }


def test_custom_tool_call_streams_its_input(base_url: str, ollama: FakeOllama) -> None:
    call = {"function": {"name": "crm__note", "arguments": {"input": "call back"}}}
    ollama.queue(Reply(content="", tool_calls=[call]))
    body = {"model": "llama3.2", "input": "Note", "tools": [NAMESPACE], "stream": True}
    status, _, raw = post(f"{base_url}/responses", body)
    assert status == 200
    events = response_events(raw)
    kinds = [e["type"] for e in events]
    assert kinds[2:] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[3]["delta"] == "call back"
    assert events[4]["input"] == "call back"
    item = events[5]["item"]
    assert (item["type"], item["name"], item["namespace"]) == ("custom_tool_call", "note", "crm")
    final = Response.model_validate(events[-1]["response"])
    assert final.output[0].type == "custom_tool_call"
    assert final.output[0].input == "call back"


HOSTED = [
    {"type": "web_search"},
    {"type": "web_search_preview"},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "code_interpreter", "container": {"type": "auto"}},
    {"type": "image_generation"},
    {
        "type": "computer_use_preview",
        "display_width": 1,
        "display_height": 1,
        "environment": "linux",
    },
    {"type": "mcp", "server_label": "deepwiki", "server_url": "https://example.invalid/mcp"},
    {"type": "local_shell"},
    {"type": "something_new"},
]


def test_hosted_tools_are_left_out_with_a_warning(base_url: str, ollama: FakeOllama) -> None:
    body = {"model": "llama3.2", "input": "Hi", "tools": [*HOSTED, PATCH_TOOL, HOSTED[0]]}
    status, headers, raw = post(f"{base_url}/responses", body)
    assert status == 200, raw
    kinds = " ".join(t["type"] for t in HOSTED)
    assert headers[WARNING] == (
        f"tools-ignored; types={kinds}; hosted tools cannot run on a local model and were left out"
    )
    assert [t["function"]["name"] for t in ollama.last().body["tools"]] == ["apply_patch"]
    out = orjson.loads(raw)
    assert out["tools"] == body["tools"]  # echoed as sent
    out["tools"] = [t for t in out["tools"] if t["type"] != "something_new"]
    Response.model_validate(out)


def test_only_hosted_tools_means_no_tools(base_url: str, ollama: FakeOllama) -> None:
    body = {"model": "llama3.2", "input": "Hi", "tools": [{"type": "web_search"}], "stream": True}
    status, headers, raw = post(f"{base_url}/responses", body)
    assert status == 200
    assert "web_search" in headers[WARNING]
    assert response_events(raw)[-1]["type"] == "response.completed"
    assert "tools" not in ollama.last().body


def test_the_warning_joins_an_earlier_one(base_url: str, ollama: FakeOllama) -> None:
    body = {
        "model": "llama3.2",
        "input": "word " * 2000,
        "num_ctx": 512,
        "tools": [{"type": "web_search"}],
    }
    status, headers, _ = post(f"{base_url}/responses", body)
    assert status == 200
    first, second = headers[WARNING].split(", ")
    assert first.startswith("prompt-truncated; num_ctx=512;")
    assert second.startswith("tools-ignored; types=web_search;")


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "web_search_preview"},
        {"type": "file_search"},
        {"type": "image_generation"},
        {"type": "mcp", "server_label": "deepwiki"},
        {"type": "shell"},
    ],
)
def test_forcing_a_hosted_tool_is_refused(
    base_url: str, ollama: FakeOllama, choice: dict[str, Any]
) -> None:
    body = {"model": "llama3.2", "input": "Hi", "tools": HOSTED, "tool_choice": choice}
    status, _, raw = post(f"{base_url}/responses", body)
    assert status == 400
    error = orjson.loads(raw)["error"]
    assert (error["param"], error["code"]) == ("tool_choice", "unsupported_value")
    assert repr(choice["type"]) in error["message"]
    assert not ollama.requests


def test_the_refusal_setting(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    url = make_shim(refuse_hosted_tools=True)
    body = {"model": "llama3.2", "input": "Hi", "tools": [PATCH_TOOL, NAMESPACE, HOSTED[2]]}
    status, _, raw = post(f"{url}/responses", body)
    assert status == 400
    error = orjson.loads(raw)["error"]
    assert (error["param"], error["code"]) == ("tools[2].type", "unsupported_value")
    assert "'file_search'" in error["message"]
    body["tools"] = [PATCH_TOOL, NAMESPACE]
    status, _, _ = post(f"{url}/responses", body)
    assert status == 200


def test_the_refusal_setting_from_flag_and_environment() -> None:
    from oai2ollama.settings import build_parser, settings_from

    assert Settings().refuse_hosted_tools is False
    parser = build_parser()
    assert settings_from(parser.parse_args(["--refuse-hosted-tools"]), {}).refuse_hosted_tools
    env = {"OAI2OLLAMA_REFUSE_HOSTED_TOOLS": "1"}
    assert settings_from(parser.parse_args([]), env).refuse_hosted_tools
    assert not settings_from(
        parser.parse_args(["--no-refuse-hosted-tools"]), env
    ).refuse_hosted_tools
    assert not settings_from(parser.parse_args([]), {}).refuse_hosted_tools


@pytest.mark.parametrize(
    ("choice", "forced"),
    [
        ({"type": "function", "name": "lookup"}, "crm__lookup"),
        ({"type": "function", "name": "lookup", "namespace": "crm"}, "crm__lookup"),
        ({"type": "custom", "name": "apply_patch"}, "apply_patch"),
    ],
)
def test_named_choice_finds_namespaced_and_custom_tools(
    choice: dict[str, Any], forced: str
) -> None:
    body = {"model": "m", "input": "x", "tools": [NAMESPACE, PATCH_TOOL], "tool_choice": choice}
    req = responses.parse_request(body)
    assert req.chat.tools.forced is not None
    assert req.chat.tools.forced.name == forced


@pytest.mark.parametrize("named", [True, False])
def test_forced_custom_tool_answers_its_input(
    base_url: str, ollama: FakeOllama, named: bool
) -> None:
    arguments = {"input": PATCH}
    answer = arguments if named else {"name": "apply_patch", "arguments": arguments}
    for stream in (False, True):
        ollama.queue(Reply(content=orjson.dumps(answer).decode()))
        body = {
            "model": "llama3.2",
            "input": "Fix it",
            "tools": [PATCH_TOOL, NAMESPACE],
            "tool_choice": {"type": "custom", "name": "apply_patch"} if named else "required",
            "parallel_tool_calls": False,
            "stream": stream,
        }
        status, _, raw = post(f"{base_url}/responses", body)
        assert status == 200
        data = response_events(raw)[-1]["response"] if stream else orjson.loads(raw)
        [item] = Response.model_validate(data).output
        assert item.type == "custom_tool_call"
        assert item.input == PATCH


def test_every_responses_field_is_accepted(base_url: str, ollama: FakeOllama) -> None:
    """The fields of the newest SDK's ``ResponseCreateParams`` (and Codex's own
    ``client_metadata``) that a local model can ignore are accepted."""
    body = {
        "model": "qwen3:8b",
        "input": [
            {"type": "message", "role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        ],
        "include": ["reasoning.encrypted_content", "message.output_text.logprobs"],
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "text"}, "verbosity": "low"},
        "prompt_cache_key": "k",
        "prompt_cache_retention": "24h",
        "prompt_cache_options": {"mode": "implicit"},
        "client_metadata": {"x-codex-turn-metadata": "{}"},
        "store": False,
        "metadata": {"a": "b"},
        "user": "u",
        "safety_identifier": "s",
        "service_tier": "auto",
        "truncation": "auto",
        "top_logprobs": 2,
        "max_tool_calls": 3,
        "moderation": {"mode": "score"},
        "context_management": [{"type": "compaction", "compact_threshold": 1000}],
        "stream_options": {"include_obfuscation": False},
        "parallel_tool_calls": False,
        "stream": True,
    }
    ollama.queue(Reply(content="Hello"))
    status, _, raw = post(f"{base_url}/responses", body)
    assert status == 200, raw
    final = Response.model_validate(response_events(raw)[-1]["response"])
    assert final.output_text == "Hello"
    assert final.store is False
    assert final.reasoning is not None
    assert final.reasoning.summary == "auto"
    sent = ollama.last().body
    assert sent["think"] == "low"
    assert set(sent) == {"model", "messages", "stream", "think"}


@pytest.mark.parametrize("namespace", [{"namespace": "crm"}, {}])
def test_a_namespaced_call_in_history_keeps_the_models_name(namespace: dict[str, str]) -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"}
    body = {
        "model": "m",
        "tools": [NAMESPACE],
        "input": [
            {"role": "user", "content": "Who?"},
            call | namespace,
            {"type": "function_call_output", "call_id": "c1", "output": "Ada"},
        ],
    }
    messages = responses.parse_request(body).chat.payload["messages"]
    assert messages[1]["tool_calls"] == [
        {"function": {"name": "crm__lookup", "arguments": {}}, "id": "c1"}
    ]
    assert messages[2]["tool_name"] == "crm__lookup"
