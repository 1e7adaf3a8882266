"""The settings table: flags, environment and the config file's [server] table, from one place."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from oai2ollama import settings as table
from oai2ollama.cli import build_parser, main, settings_from
from oai2ollama.config import Settings, SettingsError

from .fake_ollama import FakeOllama

README = Path(__file__).resolve().parents[1] / "README.md"


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    return settings_from(build_parser().parse_args(argv), env or {})


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "oai2ollama.toml"
    path.write_text(text)
    return str(path)


def test_readme_table_is_the_declared_one() -> None:
    text = README.read_text()
    assert table.README_START in text
    assert text == table.readme_with_table(text), (
        "README's settings table is stale: run python -m oai2ollama.settings --readme README.md"
    )


def test_every_settings_field_is_declared_with_the_same_default() -> None:
    declared = {s.attr: s for s in table.SETTINGS if s.attr}
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert fields - set(declared) == {"api_keys", "policy"}  # assembled from several settings
    assert set(declared) <= fields
    defaults = Settings()
    for attr, s in declared.items():
        assert getattr(defaults, attr) == s.field_value(s.default), s.name


def test_names_flags_and_variables_follow_one_rule() -> None:
    out = build_parser().format_help()
    for s in table.SETTINGS:
        assert s.env[0] == "OAI2OLLAMA_" + s.name.upper()
        assert s.flag in out
        assert f"${s.env[0]}" in out
    names = [s.name for s in table.SETTINGS]
    assert len(names) == len(set(names))


def test_defaults_from_the_table() -> None:
    assert parse([]) == Settings()


def test_every_kind_from_the_environment() -> None:
    env = {
        "OAI2OLLAMA_MAX_QUEUE": "3",
        "OAI2OLLAMA_IDLE_TIMEOUT": "2.5",
        "OAI2OLLAMA_REQUEST_TIMEOUT": "0",
        "OAI2OLLAMA_LOG_FORMAT": "JSON",
        "OAI2OLLAMA_LOOP": "asyncio",
        "OAI2OLLAMA_ACCESS_LOG": "off",
        "OAI2OLLAMA_LOG_BODIES": "Yes",
        "OAI2OLLAMA_API_KEY": "a, b,,",
        "OAI2OLLAMA_CORS_ORIGIN": "chrome-extension://*,app://obsidian.md",
        "OAI2OLLAMA_ALIAS": "gpt-4o=qwen3:8b, gpt-4o-mini = llama3.2",
        "OAI2OLLAMA_NUM_CTX": "auto",
        "OAI2OLLAMA_KEEP_ALIVE": "-1",
        "OAI2OLLAMA_DEFAULT_MODEL": "llama3.2",
        "OAI2OLLAMA_MAX_NUM_CTX": "4096",
        "OAI2OLLAMA_MAX_CONCURRENCY": "",  # empty: unset
    }
    s = parse([], env)
    assert (s.max_queue, s.idle_timeout, s.request_timeout) == (3, 2.5, None)
    assert (s.log_format, s.loop, s.access_log, s.log_bodies) == ("json", "asyncio", False, True)
    assert s.api_keys == ("a", "b")
    assert s.cors_origins == ("chrome-extension://*", "app://obsidian.md")
    assert s.max_concurrency == 0
    policy = s.policy
    assert policy.alias("gpt-4o") == "qwen3:8b"
    assert policy.alias("gpt-4o-mini") == "llama3.2"
    assert (policy.defaults.num_ctx, policy.defaults.keep_alive) == ("auto", -1)
    assert (policy.default_model, policy.max_num_ctx) == ("llama3.2", 4096)


def test_flags_win_over_the_environment_in_both_directions() -> None:
    env = {"OAI2OLLAMA_ACCESS_LOG": "false", "OAI2OLLAMA_ALLOW_IMAGE_URLS": "1"}
    s = parse(["--access-log", "--no-allow-image-urls", "--max-queue", "1"], env)
    assert (s.access_log, s.allow_image_urls, s.max_queue) == (True, False, 1)
    s = parse(["--no-access-log"], {})  # the old flag still works
    assert s.access_log is False


def test_ollama_url_variable_beats_ollama_host() -> None:
    env = {"OLLAMA_HOST": "a:1"}
    assert parse([], env).ollama_url == "http://a:1"
    env["OAI2OLLAMA_OLLAMA_URL"] = "b:2"
    assert parse([], env).ollama_url == "http://b:2"
    assert parse(["--ollama-url", "c"], env).ollama_url == "http://c:11434"


SERVER_TABLE = """
default_model = "llama3.2"

[server]
port = 0
max_queue = 7
first_byte_timeout = 900
keepalive_interval = 2.5
access_log = false
log_level = "DEBUG"
cors_origin = ["app://obsidian.md"]
api_key = "file-key"

[aliases]
"gpt-4o" = "qwen3:8b"
"""


def test_server_table_in_the_config_file(tmp_path: Path) -> None:
    path = config_file(tmp_path, SERVER_TABLE)
    s = parse(["--config", path])
    assert (s.port, s.max_queue, s.first_byte_timeout, s.keepalive_interval) == (0, 7, 900, 2.5)
    assert (s.access_log, s.log_level, s.cors_origins) == (False, "debug", ("app://obsidian.md",))
    assert s.api_keys == ("file-key",)
    assert s.policy.alias("gpt-4o") == "qwen3:8b"  # the model configuration still reads
    assert s.policy.default_model == "llama3.2"


def test_precedence_flag_environment_file_default(tmp_path: Path) -> None:
    path = config_file(tmp_path, SERVER_TABLE)
    env = {"OAI2OLLAMA_CONFIG": path}
    assert parse([], env).max_queue == 7  # file over default
    assert parse([], env).max_concurrency == 0  # default
    env["OAI2OLLAMA_MAX_QUEUE"] = "8"
    env["OAI2OLLAMA_ACCESS_LOG"] = "1"
    env["OAI2OLLAMA_API_KEY"] = "env-key"
    s = parse([], env)
    assert (s.max_queue, s.access_log, s.api_keys) == (8, True, ("env-key",))  # env over file
    s = parse(["--max-queue", "9", "--no-access-log", "--api-key", "flag-key"], env)
    assert (s.max_queue, s.access_log, s.api_keys) == (9, False, ("flag-key",))  # flag over env


def test_environment_overrides_the_model_configuration(tmp_path: Path) -> None:
    path = config_file(tmp_path, '[defaults]\nnum_ctx = 8192\n\n[aliases]\n"gpt-4o" = "a"\n')
    s = parse(["--config", path], {"OAI2OLLAMA_NUM_CTX": "4096", "OAI2OLLAMA_ALIAS": "gpt-4o=b"})
    assert s.policy.defaults.num_ctx == 4096
    assert s.policy.alias("gpt-4o") == "b"
    assert parse(["--config", path]).policy.defaults.num_ctx == 8192


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[server]\nbogus = 1\n", "unknown key 'bogus' in [server]"),
        ("[server]\nport = 'http'\n", "[server] port: not a port number"),
        ("[server]\nport = true\n", "[server] port: must be a string or a number"),
        ("[server]\naccess_log = 'yes'\n", "[server] access_log: must be true or false"),
        ("[server]\ncors_origin = [1]\n", "[server] cors_origin: must be a string or an array"),
        ("[server]\nlog_format = 'xml'\n", "'xml' is not one of text, json"),
        ("[server]\nalias = ['a=b']\n", "[server] alias: set 'aliases' outside [server]"),
        ("[server]\nconfig = 'x.toml'\n", "[server] config: not for the file"),
        ("server = 1\n", "[server] must be a table"),
    ],
)
def test_bad_server_tables_are_one_line_errors(
    tmp_path: Path, text: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path, text)
    with pytest.raises(SettingsError, match=r"oai2ollama\.toml") as info:
        parse(["--config", path])
    assert needle in str(info.value)
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", path], {})
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"OAI2OLLAMA_ACCESS_LOG": "maybe"}, "OAI2OLLAMA_ACCESS_LOG: expected one of"),
        ({"OAI2OLLAMA_MAX_QUEUE": "-1"}, "OAI2OLLAMA_MAX_QUEUE: out of range"),
        ({"OAI2OLLAMA_ALIAS": "gpt-4o"}, "OAI2OLLAMA_ALIAS: expected NAME=MODEL"),
        ({"OAI2OLLAMA_LOOP": "trio"}, "OAI2OLLAMA_LOOP: 'trio' is not one of"),
        ({"OAI2OLLAMA_IMAGE_TIMEOUT": "0"}, "OAI2OLLAMA_IMAGE_TIMEOUT: must be more than zero"),
        ({"OAI2OLLAMA_MAX_NUM_CTX": "10"}, "OAI2OLLAMA_MAX_NUM_CTX: out of range"),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse([], env)
    assert needle in str(info.value)


def test_exposed_host_from_the_file_still_needs_a_key(tmp_path: Path) -> None:
    path = config_file(tmp_path, '[server]\nhost = "0.0.0.0"\n')
    with pytest.raises(SettingsError, match="--allow-unauthenticated"):
        parse(["--config", path])
    path = config_file(tmp_path, '[server]\nhost = "0.0.0.0"\nallow_unauthenticated = true\n')
    assert parse(["--config", path]).allow_unauthenticated


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is not None, reason="uvloop is installed")
def test_loop_from_the_environment_reaches_main(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([], {"OAI2OLLAMA_LOOP": "uvloop"})
    assert info.value.code == 2
    assert "uvloop is not installed" in capsys.readouterr().err


def test_markdown_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert table._main(["--markdown"]) == 0
    out = capsys.readouterr().out
    assert out == table.markdown()
    assert "| `--[no-]access-log` | `OAI2OLLAMA_ACCESS_LOG` | `server.access_log` | on |" in out
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{table.README_START}\n| old |\n{table.README_END}\n\nafter\n")
    assert table._main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "| old |" not in text
    assert text.endswith(f"{table.markdown()}{table.README_END}\n\nafter\n")


def test_console_script_from_environment_and_file_only(tmp_path: Path, ollama: FakeOllama) -> None:
    path = config_file(
        tmp_path, '[server]\nport = 0\napi_key = ["file-key"]\nlog_format = "json"\n'
    )
    env = {**os.environ, "OAI2OLLAMA_CONFIG": path, "OAI2OLLAMA_OLLAMA_URL": ollama.url}
    env.pop("OLLAMA_HOST", None)
    env.pop("OAI2OLLAMA_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "oai2ollama"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip().split("=", 1)[1]
        client = openai.OpenAI(base_url=base_url, api_key="file-key", max_retries=0, timeout=10)
        assert any(m.id == "qwen3:8b" for m in client.models.list().data)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url, api_key="other", max_retries=0).models.list()
        proc.terminate()
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("{")  # log_format from the file
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
