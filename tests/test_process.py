"""The installed console script, started as a real process and reached over TCP."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from .fake_ollama import FakeOllama

SCRIPT = shutil.which("oai2ollama", path=str(Path(sys.executable).parent)) or shutil.which(
    "oai2ollama"
)


@pytest.fixture
def process(ollama: FakeOllama) -> Iterator[tuple[subprocess.Popen[str], str]]:
    assert SCRIPT, "the oai2ollama console script is not installed"
    env = {**os.environ, "OLLAMA_HOST": ollama.url, "OAI2OLLAMA_API_KEY": "proc-key"}
    proc = subprocess.Popen(
        [SCRIPT, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    try:
        assert line.startswith("export OPENAI_BASE_URL=http://127.0.0.1:")
        yield proc, line.split("=", 1)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_console_script_serves_the_sdk_and_stops_cleanly(
    process: tuple[subprocess.Popen[str], str], ollama: FakeOllama
) -> None:
    proc, base_url = process
    assert base_url.endswith("/v1")
    client = openai.OpenAI(base_url=base_url, api_key="proc-key", max_retries=0, timeout=10)
    assert any(m.id == "qwen3:8b" for m in client.models.list().data)
    out = client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "hi"}]
    )
    assert out.choices[0].message.content == "Hello! How can I help you today?"
    stream = client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream).startswith("Hello!")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert "Traceback" not in log
    assert f"connected to Ollama 0.12.11 at {ollama.url}, 5 models" in log
    assert "POST /v1/chat/completions llama3.2 200" in log  # the access log
    assert "proc-key" not in log


def test_unreachable_ollama_is_a_warning_not_a_failure(ollama: FakeOllama) -> None:
    assert SCRIPT
    proc = subprocess.Popen(
        [SCRIPT, "--port", "0", "--ollama-url", "127.0.0.1:9"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip().split("=", 1)[1]
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            client.models.list()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        assert "Ollama is not reachable yet" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_module_entry_point_and_bad_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oai2ollama", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("oai2ollama ")
    bad = subprocess.run(
        [sys.executable, "-m", "oai2ollama", "--port", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0
    assert "Traceback" not in bad.stderr


def test_port_in_use_is_a_one_line_error(ollama: FakeOllama) -> None:
    port = ollama.url.rsplit(":", 1)[1]
    assert SCRIPT
    done = subprocess.run(
        [SCRIPT, "--port", port, "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "cannot listen" in done.stderr
    assert "Traceback" not in done.stderr
