"""Tool rules on plain dicts: definitions, tool_choice emulation, parallel calls, functions."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from oai2ollama.errors import InvalidRequest
from oai2ollama.translate.chat import ChatRequest, ChatStream, completion, parse_request
from oai2ollama.translate.tools import opening

USER = [{"role": "user", "content": "weather in Paris?"}]
PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather", "parameters": PARAMS},
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def request(**body: Any) -> ChatRequest:
    body.setdefault("model", "m")
    body.setdefault("messages", USER)
    return parse_request(body)


def answer(content: str = "", calls: list[dict[str, Any]] | None = None, **extra: Any) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {"message": message, "done": True, "done_reason": "stop", **extra}


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"function": {"index": 0, "name": name, "arguments": arguments}}


def choice_of(req: ChatRequest, *answers: dict[str, Any]) -> dict[str, Any]:
    return completion(list(answers), req, completion_id="c", created=0)["choices"][0]


def sse(data: bytes) -> list[Any]:
    blocks = [b for b in data.split(b"\n\n") if b]
    return [b[6:].decode() if b == b"data: [DONE]" else orjson.loads(b[6:]) for b in blocks]


# ---- tool_choice: a named function ---------------------------------------------------------


def test_named_tool_choice_constrains_the_answer_with_the_parameters_schema() -> None:
    req = request(
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    sent = req.payload
    assert "tools" not in sent
    assert sent["format"] == PARAMS
    assert sent["messages"][-1]["role"] == "system"
    assert "get_weather" in sent["messages"][-1]["content"]
    choice = choice_of(req, answer('{"city": "Paris"}'))
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [made] = choice["message"]["tool_calls"]
    assert made["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert made["id"].startswith("call_")


def test_named_tool_choice_without_parameters_uses_an_object_schema() -> None:
    req = request(tools=[TIME], tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert req.payload["format"] == {"type": "object", "properties": {}}


def test_a_forced_answer_that_is_not_json_stays_text() -> None:
    req = request(
        tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    for text in ("I would rather not.", "  [1, 2]", "{city: Paris}", "  {  "):
        choice = choice_of(req, answer(text))
        assert choice["finish_reason"] == "stop"
        assert choice["message"]["content"] == text
        assert "tool_calls" not in choice["message"]


def test_a_forced_call_cut_by_the_length_limit_is_a_cut_call() -> None:
    """As at OpenAI: the arguments as far as they came, and finish_reason "length"."""
    req = request(
        tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    choice = choice_of(req, answer('{"city": "Par', done_reason="length"))
    assert choice["finish_reason"] == "length"
    [made] = choice["message"]["tool_calls"]
    assert made["function"] == {"name": "get_weather", "arguments": '{"city": "Par'}


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("", None),
        ("  \n", None),
        (" {", None),
        ("{ \n", None),
        ('{"', True),
        ("{}", True),
        ('  { "city"', True),
        ("Sure", False),
        ("[", False),
        ("{x", False),
        ('"{', False),
    ],
)
def test_the_opening_of_a_named_forced_call(text: str, verdict: bool | None) -> None:
    assert opening(text) is verdict


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ({"type": "function", "function": {"name": "nope"}}, "tool_choice"),
        ("sometimes", "tool_choice"),
        ({"type": "custom"}, "tool_choice"),
    ],
)
def test_bad_tool_choice(choice: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        request(tools=[WEATHER], tool_choice=choice)
    assert info.value.param == param


def test_forcing_a_call_without_tools_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        request(tool_choice="required")
    assert info.value.param == "tool_choice"


# ---- tool_choice: required -----------------------------------------------------------------


def test_required_builds_a_union_of_the_tools_and_reads_several_calls() -> None:
    req = request(tools=[WEATHER, TIME], tool_choice="required")
    schema = req.payload["format"]
    assert schema["required"] == ["tool_calls"]
    options = schema["properties"]["tool_calls"]["items"]["anyOf"]
    assert [o["properties"]["name"]["enum"] for o in options] == [["get_weather"], ["get_time"]]
    assert options[0]["properties"]["arguments"] == PARAMS
    text = orjson.dumps(
        {
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Paris"}},
                {"name": "get_time", "arguments": {}},
            ]
        }
    ).decode()
    choice = choice_of(req, answer(text))
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == [
        "get_weather",
        "get_time",
    ]
    assert choice["finish_reason"] == "tool_calls"


def test_required_without_parallel_calls_asks_for_one_call() -> None:
    req = request(tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False)
    assert "anyOf" in req.payload["format"]
    choice = choice_of(req, answer('{"name": "get_time", "arguments": {}}'))
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_time", "arguments": "{}"}


def test_required_answer_naming_an_unknown_function_stays_text() -> None:
    req = request(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
    choice = choice_of(req, answer('{"name": "rm_rf", "arguments": {}}'))
    assert choice["message"]["content"] == '{"name": "rm_rf", "arguments": {}}'
    assert choice["finish_reason"] == "stop"


def test_allowed_tools_filters_the_tool_list() -> None:
    allowed = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "auto",
            "tools": [{"type": "function", "function": {"name": "get_time"}}],
        },
    }
    req = request(tools=[WEATHER, TIME], tool_choice=allowed)
    assert [t["function"]["name"] for t in req.payload["tools"]] == ["get_time"]


def test_native_tool_calls_are_used_even_when_forced() -> None:
    req = request(tools=[WEATHER], tool_choice="required")
    choice = choice_of(req, answer("", [call("get_weather", city="Oslo")]))
    assert orjson.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Oslo"
    }


# ---- parallel_tool_calls: false ------------------------------------------------------------


def test_parallel_false_keeps_only_the_first_call() -> None:
    req = request(tools=[WEATHER], parallel_tool_calls=False)
    choice = choice_of(
        req, answer("", [call("get_weather", city="A"), call("get_weather", city="B")])
    )
    assert len(choice["message"]["tool_calls"]) == 1
    stream = ChatStream("c", 0, req)
    first = sse(
        stream.feed(
            {
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [call("get_weather", city="A")],
                }
            }
        )
    )
    second = sse(
        stream.feed(
            {
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [call("get_weather", city="B")],
                },
                "done": True,
            }
        )
    )
    assert len(first[0]["choices"][0]["delta"]["tool_calls"]) == 1
    assert second[0]["choices"][0]["finish_reason"] == "tool_calls"
    assert all("tool_calls" not in e["choices"][0]["delta"] for e in second if e != "[DONE]")


# ---- streaming a forced call ---------------------------------------------------------------


def test_named_forced_call_streams_its_arguments_as_fragments() -> None:
    req = request(
        tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    stream = ChatStream("c", 0, req)
    events = []
    for piece in ['{"city":', ' "Par', 'is"}']:
        events += sse(stream.feed({"message": {"role": "assistant", "content": piece}}))
    events += sse(
        stream.feed(
            {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"}
        )
    )
    deltas = [e["choices"][0]["delta"] for e in events if e != "[DONE]" and e["choices"]]
    first = deltas[0]["tool_calls"][0]
    assert first["index"] == 0
    assert first["type"] == "function"
    assert first["function"]["name"] == "get_weather"
    assert first["id"].startswith("call_")
    arguments = "".join(
        d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d
    )
    assert orjson.loads(arguments) == {"city": "Paris"}
    assert all("content" not in d for d in deltas)
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_required_forced_call_is_emitted_whole_at_the_end() -> None:
    req = request(tools=[WEATHER], tool_choice="required")
    stream = ChatStream("c", 0, req)
    text = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}'
    assert stream.feed({"message": {"role": "assistant", "content": text[:20]}}) == b""
    events = sse(
        stream.feed({"message": {"role": "assistant", "content": text[20:]}, "done": True})
    )
    made = events[0]["choices"][0]["delta"]["tool_calls"][0]
    assert made["function"]["name"] == "get_weather"
    assert orjson.loads(made["function"]["arguments"]) == {"city": "Rome"}
    assert events[1]["choices"][0]["finish_reason"] == "tool_calls"


# ---- legacy functions ----------------------------------------------------------------------


def test_legacy_functions_map_to_tools_and_answer_with_function_call() -> None:
    req = request(functions=[WEATHER["function"]])
    assert req.payload["tools"] == [WEATHER]
    choice = choice_of(req, answer("", [call("get_weather", city="Paris")]))
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert "tool_calls" not in choice["message"]
    forced = request(functions=[WEATHER["function"]], function_call={"name": "get_weather"})
    assert forced.payload["format"] == PARAMS
    assert "tools" not in request(functions=[WEATHER["function"]], function_call="none").payload


def test_legacy_function_history_is_converted() -> None:
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {"role": "function", "name": "get_weather", "content": "sunny"},
    ]
    sent = request(messages=messages, functions=[WEATHER["function"]]).payload["messages"]
    assert sent[1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather"}


# ---- n -------------------------------------------------------------------------------------


def test_n_choices_use_seed_plus_index() -> None:
    req = request(n=3, seed=7)
    assert [req.payload_for(i)["options"]["seed"] for i in range(3)] == [7, 8, 9]
    assert req.payload["options"]["seed"] == 7
    assert request(n=2).payload_for(1) == request(n=2).payload


def test_n_is_capped() -> None:
    with pytest.raises(InvalidRequest) as info:
        request(n=9)
    assert info.value.param == "n"


def test_n_choices_and_usage() -> None:
    req = request(n=2)
    out = completion(
        [
            answer("a", prompt_eval_count=5, eval_count=1),
            answer("bb", prompt_eval_count=5, eval_count=2),
        ],
        req,
        completion_id="c",
        created=0,
    )
    assert [c["index"] for c in out["choices"]] == [0, 1]
    assert [c["message"]["content"] for c in out["choices"]] == ["a", "bb"]
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_stream_for_a_second_choice_carries_its_index_and_leaves_the_end_to_the_caller() -> None:
    req = request(n=2, stream=True)
    stream = ChatStream("c", 0, req, index=1)
    assert sse(stream.start())[0]["choices"][0]["index"] == 1
    events = sse(
        stream.feed(
            {"message": {"role": "assistant", "content": "x"}, "done": True, "eval_count": 3}
        )
    )
    assert "[DONE]" not in events
    assert events[-1]["choices"][0]["index"] == 1
    assert stream.usage["completion_tokens"] == 3


READER_CASES = [
    '{"name": "get_weather", "arguments": {"city": "Paris", "n": [1, {"a": "}"}]}}',
    '{"arguments": {"city": "Par\\"is"}, "name": "get_weather"}',
    '{"name": "nope", "arguments": {}}',
    "Hello there",
    '{"name": "get_time"}',
    '{"name": "get_weather", "arguments": {"city": "Pa',
    '{"name": "get_weather", "arguments": {"city": "Paris"}} and more',
    '{"name": "get_weather", "arguments": {"city": "Paris"]]]}',
    '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}',
    '  {"name": "get_w\\u0065ather", "arguments": {}}',
    '{"other": 1}',
    "",
]


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("text", READER_CASES)
def test_the_reader_reaches_the_whole_answers_verdict_in_any_pieces(
    text: str, parallel: bool
) -> None:
    from oai2ollama.translate.tools import CallReader, ForcedCall, _arguments

    forced = ForcedCall(None, frozenset({"get_weather", "get_time"}), parallel=parallel)
    whole = forced.judge(text)
    for size in range(1, 8):
        reader = CallReader(forced)
        events = []
        for i in range(0, len(text), size):
            events += reader.feed(text[i : i + size])
        events += reader.finish()
        assert reader.verdict is (whole is not None)
        calls: list[dict[str, Any]] = []
        for event in events:
            if event[0] == "start":
                calls.append({"function": {"name": event[1], "arguments": ""}})
            elif event[0] == "args":
                calls[-1]["function"]["arguments"] += event[1]
        for call in calls:  # the arguments as the whole answer gives them
            call["function"]["arguments"] = _arguments(call["function"]["arguments"])
        assert calls == (whole or [])
