"""Chat translation rules, on plain dicts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from oai2ollama.errors import InvalidRequest
from oai2ollama.translate.chat import (
    IGNORED_FIELDS,
    ChatRequest,
    ChatStream,
    completion,
    history_reasoning,
    parse_request,
)

USER = [{"role": "user", "content": "hi"}]


def request(**body: Any) -> ChatRequest:
    body.setdefault("model", "m")
    body.setdefault("messages", USER)
    return parse_request(body)


def payload(**body: Any) -> dict[str, Any]:
    return request(**body).payload


def refused(body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_request(body)
    return info.value


# ---- request -------------------------------------------------------------------------------


def test_minimal_request_sends_only_model_messages_and_explicit_stream() -> None:
    assert payload() == {"model": "m", "messages": USER, "stream": False}
    assert payload(stream=True)["stream"] is True


def test_sampling_fields_map_to_options_only_when_set() -> None:
    out = payload(
        temperature=0.2,
        top_p=0.9,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        max_tokens=64,
        stop="END",
    )
    assert out["options"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "num_predict": 64,
        "stop": ["END"],
    }
    assert "options" not in payload(temperature=None, top_p=None, stop=None, seed=None)


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert payload(max_tokens=10, max_completion_tokens=20)["options"] == {"num_predict": 20}
    assert payload(max_completion_tokens=5)["options"] == {"num_predict": 5}


def test_stop_list_is_kept_and_non_strings_refused() -> None:
    assert payload(stop=["a", "b"])["options"]["stop"] == ["a", "b"]
    assert "options" not in payload(stop=[])
    assert refused({"model": "m", "messages": USER, "stop": ["a", 1]}).param == "stop[1]"
    assert refused({"model": "m", "messages": USER, "stop": 3}).param == "stop"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.5),
        ("temperature", "hot"),
        ("top_p", 1.5),
        ("presence_penalty", -3),
        ("seed", 1.5),
        ("seed", True),
        ("max_tokens", 0),
        ("max_completion_tokens", "10"),
        ("stream", "yes"),
        ("n", 0),
    ],
)
def test_bad_sampling_values_name_the_param(field: str, value: Any) -> None:
    err = refused({"model": "m", "messages": USER, field: value})
    assert err.param == field
    assert err.status == 400


def test_ollama_extras_pass_through_and_openai_fields_win() -> None:
    out = payload(
        num_ctx=8192,
        top_k=20,
        keep_alive="10m",
        options={"temperature": 1.0, "min_p": 0.05, "mirostat": 1},
        temperature=0.1,
    )
    assert out["options"] == {
        "temperature": 0.1,
        "min_p": 0.05,
        "mirostat": 1,
        "num_ctx": 8192,
        "top_k": 20,
    }
    assert out["keep_alive"] == "10m"


def test_option_types_are_checked_before_ollama_would_fail_with_500() -> None:
    assert refused({"model": "m", "messages": USER, "num_ctx": "big"}).param == "options.num_ctx"
    bad_stop = {"model": "m", "messages": USER, "options": {"stop": 5}}
    assert refused(bad_stop).param == "options.stop"
    assert payload(options={"stop": "x"})["options"]["stop"] == ["x"]
    assert refused({"model": "m", "messages": USER, "options": []}).param == "options"


def test_response_format() -> None:
    assert "format" not in payload(response_format={"type": "text"})
    assert payload(response_format={"type": "json_object"})["format"] == "json"
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    assert payload(response_format=fmt)["format"] == schema
    assert payload(format="json")["format"] == "json"
    err = refused({"model": "m", "messages": USER, "response_format": {"type": "xml"}})
    assert err.param == "response_format.type"
    no_schema = {"type": "json_schema", "json_schema": {"name": "x"}}
    err = refused({"model": "m", "messages": USER, "response_format": no_schema})
    assert err.param == "response_format.json_schema.schema"


def test_reasoning_effort_maps_to_think_and_absent_stays_absent() -> None:
    assert "think" not in payload()
    assert payload(reasoning_effort="none")["think"] is False
    assert payload(reasoning_effort="minimal")["think"] == "low"
    assert payload(reasoning_effort="high")["think"] == "high"
    assert payload(reasoning={"effort": "medium"})["think"] == "medium"
    assert payload(think=True)["think"] is True
    assert refused({"model": "m", "messages": USER, "reasoning_effort": "huge"}).param == (
        "reasoning_effort"
    )


def test_roles_and_content_parts() -> None:
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "system", "content": [{"type": "text", "text": "and kind"}]},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None},
    ]
    assert payload(messages=messages)["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "and kind"},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": ""},
    ]


def test_data_url_images_become_base64_and_http_urls_are_refused() -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "low"},
        },
        {"type": "image_url", "image_url": "data:image/jpeg;base64,/9j/4AAQ"},
    ]
    msg = payload(messages=[{"role": "user", "content": parts}])["messages"][0]
    assert msg == {"role": "user", "content": "what is this?", "images": ["iVBORw0K", "/9j/4AAQ"]}
    http = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    err = refused({"model": "m", "messages": [{"role": "user", "content": http}]})
    assert err.param == "messages[0].content[0].image_url.url"


def test_unsupported_parts_and_roles_are_refused_with_their_path() -> None:
    files = [{"type": "file", "file": {"file_id": "file-1"}}]
    err = refused({"model": "m", "messages": [{"role": "user", "content": files}]})
    assert err.param == "messages[0].content[0]"
    err = refused({"model": "m", "messages": [USER[0], {"role": "robot", "content": "x"}]})
    assert err.param == "messages[1].role"
    err = refused({"model": "m", "messages": [{"role": "user"}]})
    assert err.param == "messages[0].content"


def test_tool_history_converts_arguments_and_finds_tool_names() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "I should call the tool",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "name": "now", "content": "noon"},
    ]
    out = payload(messages=messages)["messages"]
    assert out[1] == {
        "role": "assistant",
        "content": "",
        "thinking": "I should call the tool",
        "tool_calls": [
            {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"id": "call_2", "function": {"name": "now", "arguments": {}}},
        ],
    }
    assert out[2] == {
        "role": "tool",
        "content": "sunny",
        "tool_name": "get_weather",
        "tool_call_id": "call_1",
    }
    assert out[3]["tool_name"] == "now"


def test_invalid_tool_arguments_are_a_400_with_the_path() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
    messages = [USER[0], {"role": "assistant", "content": None, "tool_calls": [call]}]
    err = refused({"model": "m", "messages": messages})
    assert err.param == "messages[1].tool_calls[0].function.arguments"


def test_tools_pass_through_and_tool_choice_none_drops_them() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "description": "d",
            "parameters": {"type": "object", "properties": {}},
            "strict": True,
        },
    }
    out = payload(tools=[tool])
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "d",
                "parameters": tool["function"]["parameters"],
            },
        }
    ]
    assert "tools" not in payload(tools=[tool], tool_choice="none")
    assert payload(tools=[tool], tool_choice="auto")["tools"]
    err = refused({"model": "m", "messages": USER, "tools": [{"type": "web_search"}]})
    assert err.param == "tools[0].type"


def test_ignored_fields_are_accepted() -> None:
    values = {"user": "u", "store": True, "metadata": {"a": "b"}, "logit_bias": {"1": 2}}
    body = {field: values.get(field, "x") for field in IGNORED_FIELDS}
    assert payload(**body) == {"model": "m", "messages": USER, "stream": False}


def test_audio_output_is_refused() -> None:
    assert refused({"model": "m", "messages": USER, "modalities": ["text", "audio"]}).param == (
        "modalities"
    )
    assert refused({"model": "m", "messages": USER, "audio": {"voice": "x"}}).param == "audio"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"messages": USER}, "model"),
        ({"model": 5, "messages": USER}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]"),
        ({"model": "m", "messages": USER, "stream_options": 1}, "stream_options"),
    ],
)
def test_structural_errors(body: Any, param: str | None) -> None:
    assert refused(body).param == param


# ---- answer --------------------------------------------------------------------------------


def test_completion_maps_message_usage_and_finish_reason() -> None:
    answer = {
        "model": "llama3.2",
        "message": {"role": "assistant", "content": "Hi", "thinking": "hmm"},
        "done": True,
        "done_reason": "length",
        "prompt_eval_count": 3,
        "eval_count": 2,
    }
    out = completion([answer], request(model="alias"), completion_id="chatcmpl-x", created=5)
    assert out["id"] == "chatcmpl-x"
    assert out["object"] == "chat.completion"
    assert out["model"] == "alias"
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hi",
        "refusal": None,
        "reasoning_content": "hmm",
        "reasoning_text": "hmm",
    }
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_completion_with_tool_calls_has_null_content_and_string_arguments() -> None:
    answer = {
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"index": 0, "name": "f", "arguments": {"a": 1}}}],
        },
        "done": True,
        "done_reason": "stop",
    }
    out = completion([answer], request(), completion_id="c", created=0)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["function"] == {"name": "f", "arguments": '{"a":1}'}
    # Ollama leaves zero counters out.
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def events(data: bytes) -> list[Any]:
    out = []
    for block in data.split(b"\n\n"):
        if block:
            assert block.startswith(b"data: ")
            body = block[6:]
            out.append("[DONE]" if body == b"[DONE]" else orjson.loads(body))
    return out


def test_stream_sequence_with_usage() -> None:
    s = ChatStream("chatcmpl-1", 9, request(stream_options={"include_usage": True}))
    first = events(s.start())[0]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["usage"] is None
    mid = events(s.feed({"message": {"role": "assistant", "content": "Hi"}, "done": False}))
    assert mid[0]["choices"][0]["delta"] == {"content": "Hi"}
    assert mid[0]["choices"][0]["finish_reason"] is None
    end = events(
        s.feed(
            {
                "message": {"role": "assistant", "content": "!"},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 4,
                "eval_count": 2,
            }
        )
    )
    assert [e if e == "[DONE]" else e["choices"] for e in end][-1] == "[DONE]"
    assert end[0]["choices"][0]["delta"] == {"content": "!"}
    assert end[1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert end[2]["choices"] == []
    assert end[2]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert {e["id"] for e in [first, *mid, *end[:3]]} == {"chatcmpl-1"}
    assert s.done


def test_stream_tool_calls_get_running_indexes_and_finish_as_tool_calls() -> None:
    s = ChatStream("c", 0, request())
    call = {"function": {"index": 0, "name": "f", "arguments": {"x": 1}}}
    one = events(s.feed({"message": {"role": "assistant", "content": "", "tool_calls": [call]}}))
    two = events(
        s.feed(
            {
                "message": {"role": "assistant", "content": "", "tool_calls": [call, call]},
                "done": True,
                "done_reason": "stop",
            }
        )
    )
    deltas = (
        one[0]["choices"][0]["delta"]["tool_calls"] + two[0]["choices"][0]["delta"]["tool_calls"]
    )
    assert [d["index"] for d in deltas] == [0, 1, 2]
    assert all(d["type"] == "function" and d["id"].startswith("call_") for d in deltas)
    assert deltas[0]["function"] == {"name": "f", "arguments": '{"x":1}'}
    assert two[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert "usage" not in two[1]


def test_stream_thinking_goes_to_reasoning_content() -> None:
    s = ChatStream("c", 0, request())
    out = events(s.feed({"message": {"role": "assistant", "content": "", "thinking": "hm"}}))
    assert out[0]["choices"][0]["delta"] == {"reasoning_content": "hm", "reasoning_text": "hm"}


def test_stream_error_line_raises() -> None:
    s = ChatStream("c", 0, request())
    with pytest.raises(Exception, match="out of memory"):
        s.feed({"error": "out of memory"})


def test_stream_metrics_only_done_chunk_emits_just_the_finish() -> None:
    s = ChatStream("c", 0, request())
    out = events(s.feed({"message": {"role": "assistant", "content": ""}, "done": True}))
    assert len(out) == 2
    assert out[0]["choices"][0]["finish_reason"] == "stop"
    assert out[1] == "[DONE]"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"reasoning_content": "a", "reasoning": "b"}, "a"),
        ({"reasoning_content": "", "reasoning": "b"}, "b"),
        ({"reasoning_text": "c"}, "c"),
        ({"cot_id": "x", "cot_summary": "d"}, "d"),
        (
            {
                "reasoning_details": [
                    {"type": "reasoning.text", "text": "e"},
                    {"type": "reasoning.summary", "summary": "f"},
                    {"type": "reasoning.encrypted", "data": "opaque"},
                    "junk",
                ]
            },
            "ef",
        ),
        ({"reasoning_details": "not a list", "reasoning": 3}, ""),
        ({}, ""),
    ],
)
def test_history_reasoning_reads_every_clients_key(message: dict[str, Any], expected: str) -> None:
    assert history_reasoning({"role": "assistant", "content": "", **message}) == expected
