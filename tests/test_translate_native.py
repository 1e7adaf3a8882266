"""The changes made to Ollama's own answers on its face, on plain values."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from oai2ollama.policy import ModelPolicy, Profile, apply, default_num_ctx
from oai2ollama.translate.native import (
    TRAINED_CONTEXT_KEY,
    context_in_use,
    renamer,
    show_answer,
    tags_answer,
    usage_in,
)


def entry(name: str, context: int | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"family": "llama", "parameter_size": "3.2B"}
    if context is not None:
        details["context_length"] = context
    return {"name": name, "model": name, "digest": "d" + name, "size": 1, "details": details}


def show(arch: str | None = "qwen3", context: int | None = 40960) -> dict[str, Any]:
    model_info: dict[str, Any] = {"general.basename": "Qwen3"}
    if arch is not None:
        model_info["general.architecture"] = arch
        if context is not None:
            model_info[f"{arch}.context_length"] = context
    return {"model_info": model_info, "capabilities": ["completion", "tools"], "details": {}}


def test_aliases_join_the_list_shaped_as_their_model() -> None:
    tags = {"models": [entry("llama3.2:latest"), entry("qwen3:8b")]}
    before = copy.deepcopy(tags)
    out = tags_answer(tags, [("coder", "qwen3:8b"), ("gone", "missing"), ("llama3.2", "qwen3:8b")])
    assert [m["model"] for m in out["models"]] == ["llama3.2:latest", "qwen3:8b", "coder"]
    assert out["models"][2] == {**entry("qwen3:8b"), "name": "coder", "model": "coder"}
    assert tags == before  # the cached listing is not touched


def test_tags_details_report_the_context_in_use() -> None:
    tags = {"models": [entry("a:latest", 131072), entry("b:latest", 2048), entry("c:latest")]}
    before = copy.deepcopy(tags)
    sizes = {"a:latest": 8192, "b:latest": 8192, "c:latest": 8192}
    out = tags_answer(tags, [("alias", "a:latest")], lambda name, _trained: sizes.get(name))
    assert [m["details"].get("context_length") for m in out["models"]] == [8192, 2048, None, 8192]
    assert tags == before


def test_show_reports_the_context_in_use_and_keeps_the_trained_one() -> None:
    out = show_answer(show(), 16384)
    assert out["model_info"]["qwen3.context_length"] == 16384
    assert out["model_info"][TRAINED_CONTEXT_KEY] == 40960
    assert out["capabilities"] == ["completion", "tools"]
    # Ollama cuts num_ctx to the trained length.
    assert show_answer(show(), 65536)["model_info"]["qwen3.context_length"] == 40960
    # Nothing set: as Ollama said.
    assert show_answer(show(), None) == show()
    # No architecture: no key to report under; no trained length: the num_ctx alone.
    assert show_answer(show(arch=None), 8192) == show(arch=None)
    unknown = show_answer(show(context=None), 8192)["model_info"]
    assert unknown["qwen3.context_length"] == 8192
    assert TRAINED_CONTEXT_KEY not in unknown
    # Ollama ≥ 0.30 also has it in details.
    newer = show()
    newer["details"] = {"context_length": 40960}
    assert show_answer(newer, 4096)["details"] == {"context_length": 4096}


def test_context_in_use() -> None:
    assert context_in_use(None, 4096) is None
    assert context_in_use(8192, None) == 8192
    assert context_in_use(8192, 4096) == 4096


def test_default_num_ctx_is_what_apply_sends() -> None:
    policy = ModelPolicy(max_num_ctx=16384)
    for profile, trained, expected in [
        (Profile(), 40960, None),
        (Profile(num_ctx=8192), 40960, 8192),
        (Profile(num_ctx="auto"), 40960, 16384),
        (Profile(num_ctx="auto"), 4096, 4096),
        (Profile(num_ctx="auto"), None, None),
    ]:
        assert default_num_ctx(policy, profile, trained) == expected
        sent = apply({"model": "m"}, policy, profile, trained).get("options", {})
        assert sent.get("num_ctx") == expected


def test_usage_is_read_without_parsing() -> None:
    final = orjson.dumps(
        {
            "message": {"content": '"eval_count":99'},
            "done": True,
            "prompt_eval_count": 26,
            "eval_count": 282,
        }
    )
    assert usage_in(final) == {"prompt_tokens": 26, "completion_tokens": 282, "total_tokens": 308}
    assert usage_in(b'{"done":true}')["total_tokens"] == 0
    assert usage_in(b'{"embeddings": [[0.1]], "prompt_eval_count": 3}')["prompt_tokens"] == 3


def test_rename_puts_the_asked_name_back() -> None:
    rename = renamer("qwen3:8b", "gpt-4o")
    line = orjson.dumps({"model": "qwen3:8b", "message": {"content": '"model":"qwen3:8b"'}})
    assert orjson.loads(rename(line)) == {
        "model": "gpt-4o",
        "message": {"content": '"model":"qwen3:8b"'},
    }
    assert orjson.loads(rename(b'{"model": "qwen3:8b", "done": true}'))["model"] == "gpt-4o"
    assert rename(b'{"model":"other"}') == b'{"model":"other"}'
