"""Security by default: binding, keys, CORS, limits, and logs that keep secrets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from oai2ollama.cli import build_parser, main, settings_from

from .conftest import ShimFactory
from .fake_ollama import FakeOllama

MESSAGES = [{"role": "user", "content": "the secret prompt text"}]


def request(
    method: str, url: str, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    async def run() -> tuple[int, dict[str, str], bytes]:
        data = orjson.dumps(body) if body is not None else None
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, headers=headers, data=data) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.read()

    return asyncio.run(run())


# ---- binding and keys ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::"])
def test_exposed_without_a_key_is_refused(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--host", host], {})
    assert info.value.code == 2
    assert "--allow-unauthenticated" in capsys.readouterr().err


def test_exposed_with_a_key_or_explicit_consent_is_allowed() -> None:
    parse = build_parser().parse_args
    assert settings_from(parse(["--host", "0.0.0.0", "--api-key", "k"]), {}).api_keys == ("k",)
    open_settings = settings_from(parse(["--host", "0.0.0.0", "--allow-unauthenticated"]), {})
    assert open_settings.allow_unauthenticated
    assert settings_from(parse(["--host", "localhost"]), {}).host == "localhost"


def test_keys_from_flags_environment_and_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# team keys\nalpha\n\n beta \n")
    parse = build_parser().parse_args
    s = settings_from(parse(["--api-key-file", str(path)]), {"OAI2OLLAMA_API_KEY": "x, y"})
    assert s.api_keys == ("x", "y", "alpha", "beta")
    s = settings_from(parse(["--api-key", "f", "--api-key", "g"]), {"OAI2OLLAMA_API_KEY": "x"})
    assert s.api_keys == ("f", "g")
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(SystemExit):
        main(["--api-key-file", str(empty)], {})


def test_any_of_several_keys_works(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    url = make_shim(api_keys=("first", "second"))
    for key in ("first", "second"):
        client = openai.OpenAI(base_url=url, api_key=key, max_retries=0)
        assert client.models.list().data
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="firs", max_retries=0).models.list()
    status, _, _ = request("GET", url.removesuffix("/v1") + "/readyz")
    assert status == 200  # probes stay open


def test_a_non_bearer_scheme_is_refused(make_shim: ShimFactory) -> None:
    url = make_shim(api_keys=("k",))
    status, _, body = request("GET", f"{url}/models", {"Authorization": "Basic k"})
    assert status == 401
    assert orjson.loads(body)["error"]["code"] == "invalid_api_key"


# ---- CORS ----------------------------------------------------------------------------------


def test_cors_is_off_by_default(base_url: str) -> None:
    status, headers, _ = request("GET", f"{base_url}/models", {"Origin": "https://evil.example"})
    assert status == 200
    assert "Access-Control-Allow-Origin" not in headers
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    status, headers, _ = request("OPTIONS", f"{base_url}/chat/completions", preflight)
    assert "Access-Control-Allow-Origin" not in headers


def test_cors_allowlist_with_patterns(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    url = make_shim(cors_origins=("chrome-extension://*", "app://obsidian.md"), api_keys=("k",))
    preflight = {
        "Origin": "chrome-extension://abcdef",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
    }
    status, headers, _ = request("OPTIONS", f"{url}/chat/completions", preflight)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "chrome-extension://abcdef"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "x-stainless-os" in headers["Access-Control-Allow-Headers"]
    denied = {**preflight, "Origin": "https://evil.example"}
    status, headers, _ = request("OPTIONS", f"{url}/chat/completions", denied)
    assert status == 403
    assert "Access-Control-Allow-Origin" not in headers
    # Real requests from an allowed origin carry the header, errors included, so the page can
    # read them; other origins get nothing.
    origin = {"Origin": "app://obsidian.md"}
    status, headers, _ = request("GET", f"{url}/models", {**origin, "Authorization": "Bearer k"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "app://obsidian.md"
    status, headers, _ = request("GET", f"{url}/models", origin)
    assert status == 401
    assert headers["Access-Control-Allow-Origin"] == "app://obsidian.md"
    status, headers, _ = request(
        "POST",
        f"{url}/chat/completions",
        {**origin, "Authorization": "Bearer k"},
        {"model": "llama3.2", "messages": MESSAGES, "stream": True},
    )
    assert headers["Access-Control-Allow-Origin"] == "app://obsidian.md"
    assert "X-Oai2ollama-Warning" in headers["Access-Control-Expose-Headers"]


# ---- limits --------------------------------------------------------------------------------


def test_message_count_and_nesting_limits(base_url: str, ollama: FakeOllama) -> None:
    many = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}] * 20_001}
    status, _, body = request("POST", f"{base_url}/chat/completions", body=many)
    assert status == 400
    assert orjson.loads(body)["error"]["param"] == "messages"
    raw = b'{"model": "m", "messages": ' + b"[" * 2000 + b"]" * 2000 + b"}"

    async def post_raw() -> tuple[int, bytes]:
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{base_url}/chat/completions", data=raw) as r,
        ):
            return r.status, await r.read()

    status, body = asyncio.run(post_raw())
    assert status == 400
    assert orjson.loads(body)["error"]["code"] == "invalid_json"
    assert ollama.requests == []


# ---- logs ----------------------------------------------------------------------------------


def test_logs_hold_no_keys_and_no_prompts(
    make_shim: ShimFactory, ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_shim(api_keys=("sk-very-secret",))
    caplog.set_level(logging.DEBUG)
    client = openai.OpenAI(base_url=url, api_key="sk-very-secret", max_retries=0)
    client.chat.completions.create(model="llama3.2", messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="sk-wrong-secret", max_retries=0).models.list()
    text = caplog.text
    assert "POST /v1/chat/completions llama3.2 200" in text  # the access log line
    assert "tokens=12+7" in text
    assert "secret" not in text
    assert "the secret prompt" not in text


def test_log_bodies_is_opt_in(
    make_shim: ShimFactory, ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_shim(log_bodies=True)
    caplog.set_level(logging.DEBUG)
    openai.OpenAI(base_url=url, api_key="sk-x", max_retries=0).chat.completions.create(
        model="llama3.2", messages=MESSAGES
    )
    assert "the secret prompt text" in caplog.text
    assert "sk-x" not in caplog.text


def test_json_log_format() -> None:
    from oai2ollama.logs import JsonFormatter

    record = logging.makeLogRecord(
        {
            "name": "oai2ollama.access",
            "levelno": 20,
            "levelname": "INFO",
            "msg": "%s done",
            "args": ("x",),
            "status": 200,
            "model": "m",
        }
    )
    line = orjson.loads(JsonFormatter().format(record))
    assert line["message"] == "x done"
    assert line["status"] == 200
    assert line["model"] == "m"
    assert line["level"] == "info"
