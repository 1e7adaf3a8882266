"""Embeddings and legacy completions rules, on plain dicts."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import orjson
import pytest

from oai2ollama.errors import InvalidRequest, UpstreamError
from oai2ollama.translate import completions, embeddings

# ---- embeddings ----------------------------------------------------------------------------


def embed(**body: Any) -> embeddings.EmbeddingRequest:
    body.setdefault("model", "e")
    return embeddings.parse_request(body)


def test_embedding_request() -> None:
    req = embed(input=["a", "b"], dimensions=64, encoding_format="base64", keep_alive="5m")
    assert req.payload == {"model": "e", "input": ["a", "b"], "dimensions": 64, "keep_alive": "5m"}
    assert req.base64
    assert req.count == 2
    assert embed(input="x").payload["input"] == "x"
    assert not embed(input="x").base64


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "invalid_value"),
        ([], "invalid_value"),
        (["a", ""], "invalid_value"),
        ([1, 2, 3], "unsupported_value"),
        ([[1, 2], [3]], "unsupported_value"),
        ([{"text": "a"}], "invalid_type"),
        (None, "missing_required_parameter"),
    ],
)
def test_bad_embedding_inputs_name_input(value: Any, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        embed(input=value)
    assert info.value.code == code
    assert (info.value.param or "").startswith("input")


def test_token_ids_are_refused_with_the_fix() -> None:
    with pytest.raises(InvalidRequest, match="check_embedding_ctx_length=False"):
        embed(input=[[101, 2023]])


def test_bad_encoding_format() -> None:
    with pytest.raises(InvalidRequest) as info:
        embed(input="x", encoding_format="int8")
    assert info.value.param == "encoding_format"


def test_embedding_response_float_and_base64() -> None:
    vector = [0.6, 0.8, 0.0]
    answer = {"embeddings": [vector], "prompt_eval_count": 4}
    out = embeddings.response(answer, embed(input="x"))
    assert out == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": vector}],
        "model": "e",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    encoded = embeddings.response(answer, embed(input="x", encoding_format="base64"))
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert struct.unpack("<3f", raw) == pytest.approx(vector)


def test_dimensions_are_enforced_when_ollama_ignores_them() -> None:
    answer = {"embeddings": [[3.0, 4.0, 12.0]]}
    out = embeddings.response(answer, embed(input="x", dimensions=2))
    assert out["data"][0]["embedding"] == pytest.approx([0.6, 0.8])
    assert math.isclose(math.hypot(*out["data"][0]["embedding"]), 1.0)


def test_wrong_vector_count_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        embeddings.response({"embeddings": []}, embed(input=["a", "b"]))


# ---- completions ---------------------------------------------------------------------------


def complete(**body: Any) -> completions.CompletionRequest:
    body.setdefault("model", "c")
    body.setdefault("prompt", "def add(a, b):")
    return completions.parse_request(body)


def test_fim_request() -> None:
    req = complete(suffix="\n    return total", max_tokens=64, temperature=0.2, stop=["\n\n"])
    assert req.payload_for(0) == {
        "model": "c",
        "stream": False,
        "prompt": "def add(a, b):",
        "suffix": "\n    return total",
        "options": {"num_predict": 64, "temperature": 0.2, "stop": ["\n\n"]},
    }


def test_no_default_max_tokens_is_injected() -> None:
    assert "options" not in complete().payload


def test_ollama_extras_pass_through() -> None:
    req = complete(raw=True, system="You complete code.", template="{{ .Prompt }}", keep_alive=0)
    assert (req.payload["raw"], req.payload["system"], req.payload["template"]) == (
        True,
        "You complete code.",
        "{{ .Prompt }}",
    )
    assert req.payload["keep_alive"] == 0


def test_prompt_lists_fan_out_with_n() -> None:
    req = complete(prompt=["a", "b"], n=2, seed=5)
    assert req.choices == 4
    assert [req.payload_for(i)["prompt"] for i in range(4)] == ["a", "a", "b", "b"]
    assert [req.payload_for(i)["options"]["seed"] for i in range(4)] == [5, 6, 5, 6]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": [[1, 2]]}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"suffix": 5}, "suffix"),
        ({"logprobs": 6}, "logprobs"),
        ({"best_of": 3}, "best_of"),
        ({"n": 9}, "n"),
        ({"prompt": ["x"] * 9, "n": 4}, "n"),
    ],
)
def test_bad_completion_requests(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        complete(**body)
    assert info.value.param == param


def test_completion_answer_with_echo_and_logprobs() -> None:
    req = complete(prompt="Hi", echo=True, logprobs=1)
    assert req.payload["logprobs"] is True
    assert req.payload["top_logprobs"] == 1
    lp = [
        {"token": " there", "logprob": -0.5, "top_logprobs": [{"token": " there", "logprob": -0.5}]}
    ]
    answer = {
        "response": " there",
        "done": True,
        "done_reason": "length",
        "logprobs": lp,
        "prompt_eval_count": 2,
        "eval_count": 1,
    }
    out = completions.completion([answer], req, completion_id="cmpl-1", created=3)
    assert out["object"] == "text_completion"
    [choice] = out["choices"]
    assert choice["text"] == "Hi there"
    assert choice["finish_reason"] == "length"
    assert choice["logprobs"] == {
        "tokens": [" there"],
        "token_logprobs": [-0.5],
        "top_logprobs": [{" there": -0.5}],
        "text_offset": [2],
    }
    assert out["usage"] == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}


def sse(data: bytes) -> list[Any]:
    blocks = [b for b in data.split(b"\n\n") if b]
    return ["[DONE]" if b == b"data: [DONE]" else orjson.loads(b[6:]) for b in blocks]


def test_completion_stream() -> None:
    req = complete(prompt="Hi", echo=True, stream=True, stream_options={"include_usage": True})
    s = completions.CompletionStream("cmpl-1", 3, req)
    first = sse(s.start())
    assert first[0]["choices"][0]["text"] == "Hi"
    assert first[0]["object"] == "text_completion"
    mid = sse(s.feed({"response": " you", "done": False}))
    assert mid[0]["choices"][0] == {
        "index": 0,
        "text": " you",
        "logprobs": None,
        "finish_reason": None,
    }
    end = sse(s.feed({"response": "", "done": True, "prompt_eval_count": 1, "eval_count": 1}))
    assert end[0]["choices"][0]["finish_reason"] == "stop"
    assert end[1]["choices"] == []
    assert end[1]["usage"]["total_tokens"] == 2
    assert end[2] == "[DONE]"
    assert completions.CompletionStream("c", 0, complete(stream=True)).start() == b""
