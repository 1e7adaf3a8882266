"""Aliases, per-model defaults and the config file, on plain values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oai2ollama.cli import build_parser, main, settings_from
from oai2ollama.policy import (
    ConfigError,
    ModelPolicy,
    Profile,
    apply,
    context_full,
    likely_truncated,
    load_config,
    needs_context_length,
    policy_from,
)
from oai2ollama.translate.models import context_length_of

CONFIG = """
default_model = "llama3.2"
max_num_ctx = 16384

[defaults]
num_ctx = 8192
keep_alive = "30m"
options = { top_k = 30 }

[models."qwen3*"]
num_ctx = "auto"
options = { temperature = 0.6 }

[models."llama3.2"]
keep_alive = -1

[aliases]
"gpt-4o" = "qwen3:8b"
"gpt-3.5-turbo*" = "llama3.2"
"gpt-4o-mini" = "llama3.2"
"""


@pytest.fixture
def policy(tmp_path: Path) -> ModelPolicy:
    path = tmp_path / "oai2ollama.toml"
    path.write_text(CONFIG)
    return policy_from(load_config(path))


def test_aliases_exact_first_then_patterns(policy: ModelPolicy) -> None:
    assert policy.alias("gpt-4o") == "qwen3:8b"
    assert policy.alias("gpt-4o-mini") == "llama3.2"
    assert policy.alias("gpt-3.5-turbo-16k") == "llama3.2"
    assert policy.alias("llama3.2") is None
    assert policy.listed_aliases() == [("gpt-4o", "qwen3:8b"), ("gpt-4o-mini", "llama3.2")]
    assert policy.default_model == "llama3.2"


def test_profiles_layer_defaults_and_matching_models(policy: ModelPolicy) -> None:
    qwen = policy.profile("qwen3:8b")
    assert qwen == Profile(
        num_ctx="auto", keep_alive="30m", options={"top_k": 30, "temperature": 0.6}
    )
    llama = policy.profile("llama3.2:latest")  # "llama3.2" names ":latest" too
    assert (llama.num_ctx, llama.keep_alive) == (8192, -1)
    assert policy.profile("other").options == {"top_k": 30}


def payload(**options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": [], "stream": False}
    if options:
        body["options"] = options
    return body


def test_apply_gives_the_client_the_last_word_by_default(policy: ModelPolicy) -> None:
    profile = policy.profile("llama3.2")
    out = apply(payload(top_k=5, num_ctx=2048, temperature=0.1), policy, profile)
    assert out["options"] == {"top_k": 5, "num_ctx": 2048, "temperature": 0.1}
    assert out["keep_alive"] == -1
    out = apply({**payload(), "keep_alive": "1m"}, policy, profile)
    assert out["keep_alive"] == "1m"
    assert out["options"] == {"top_k": 30, "num_ctx": 8192}


def test_apply_without_client_overrides_keeps_the_runner_stable() -> None:
    locked = ModelPolicy(
        defaults=Profile(num_ctx=4096, keep_alive="1h", options={"temperature": 0.2}),
        client_overrides=False,
    )
    sent = {**payload(num_ctx=999, num_gpu=1, temperature=0.9, top_p=0.5), "keep_alive": 0}
    out = apply(sent, locked, locked.profile("m"))
    assert out["options"] == {"num_ctx": 4096, "temperature": 0.2, "top_p": 0.5}
    assert out["keep_alive"] == "1h"


def test_auto_context_length_is_capped_and_stable(policy: ModelPolicy) -> None:
    profile = policy.profile("qwen3:8b")
    assert needs_context_length(policy, profile, payload())
    assert not needs_context_length(policy, profile, payload(num_ctx=1024))
    assert apply(payload(), policy, profile, 131072)["options"]["num_ctx"] == 16384
    assert apply(payload(), policy, profile, 4096)["options"]["num_ctx"] == 4096
    assert "num_ctx" not in apply(payload(), policy, profile, None)["options"]


def test_context_length_from_show_and_tags() -> None:
    show = {"model_info": {"general.architecture": "qwen3", "qwen3.context_length": 40960}}
    assert context_length_of(show) == 40960
    assert context_length_of({"details": {"context_length": 8192}}) == 8192
    assert context_length_of({"model_info": {}}) is None


def test_context_full() -> None:
    assert context_full(4090, 4096)
    assert not context_full(3000, 4096)
    assert not context_full(5000, None)


def test_likely_truncated() -> None:
    assert likely_truncated(60_000, 8192)
    assert not likely_truncated(40_000, 8192)
    assert not likely_truncated(10**6, None)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("colour = 1", "unknown key"),
        ("[defaults]\nnum_ctx = 'big'", "num_ctx"),
        ("[defaults]\nnum_ctx = 0", "num_ctx"),
        ("[defaults]\noptions = { stop = 5 }", "options.stop"),
        ("[defaults]\nkeep_alive = true", "keep_alive"),
        ("[defaults]\nsize = 1", "unknown key"),
        ('[aliases]\n"gpt-4o" = 5', "aliases"),
        ("client_overrides = 'no'", "client_overrides"),
        ("max_num_ctx = 10", "max_num_ctx"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        policy_from(load_config(path))


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/oai2ollama.toml")


def test_flags_on_top_of_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    args = build_parser().parse_args(
        [
            "--config",
            str(path),
            "--alias",
            "gpt-4o=llava:7b",
            "--alias",
            "text-embedding-3-*=nomic-embed-text",
            "--num-ctx",
            "auto",
            "--max-num-ctx",
            "4096",
            "--keep-alive",
            "-1",
            "--default-model",
            "qwen3:8b",
        ]
    )
    policy = settings_from(args, {}).policy
    assert policy.alias("gpt-4o") == "llava:7b"
    assert policy.alias("text-embedding-3-small") == "nomic-embed-text"
    assert policy.alias("gpt-4o-mini") == "llama3.2"
    assert policy.defaults.num_ctx == "auto"
    assert policy.defaults.keep_alive == -1
    assert policy.max_num_ctx == 4096
    assert policy.default_model == "qwen3:8b"


def test_config_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    policy = settings_from(build_parser().parse_args([]), {"OAI2OLLAMA_CONFIG": str(path)}).policy
    assert policy.alias("gpt-4o") == "qwen3:8b"


@pytest.mark.parametrize(
    "argv",
    [["--alias", "gpt-4o"], ["--num-ctx", "lots"], ["--config", "/nonexistent.toml"]],
)
def test_bad_policy_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv, {})
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
