"""The installed console script, started as a real process and reached over TCP."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from .fake_ollama import FakeOllama, Reply

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


def test_sigterm_answers_requests_in_flight_and_exits_on_time(ollama: FakeOllama) -> None:
    """Within the grace a request gets its answer; one still running after it gets a 503; the
    process exits right after the grace, not after aiohttp's own timeouts."""
    assert SCRIPT
    env = {**os.environ, "OLLAMA_HOST": ollama.url}
    proc = subprocess.Popen(
        [SCRIPT, "--port", "0", "--shutdown-grace", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip().split("=", 1)[1]
        ollama.queue(Reply(content="quick", first_byte_delay=0.5), Reply(hang=True))
        results: dict[str, Any] = {}

        def call(name: str) -> None:
            client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=30)
            try:
                out = client.chat.completions.create(
                    model="llama3.2", messages=[{"role": "user", "content": name}]
                )
                results[name] = out.choices[0].message.content
            except openai.APIStatusError as exc:
                results[name] = exc
            except openai.APIConnectionError as exc:
                results[name] = exc

        threads = [threading.Thread(target=call, args=(name,)) for name in ("first", "second")]

        def chats() -> int:
            return sum(r.path == "/api/chat" for r in ollama.requests)

        threads[0].start()
        while chats() < 1:
            time.sleep(0.01)
        threads[1].start()
        while chats() < 2:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert proc.wait(10) == 0
        took = time.monotonic() - started
        for t in threads:
            t.join(10)
        assert results["first"] == "quick"
        late = results["second"]
        assert isinstance(late, openai.APIStatusError), late
        assert late.status_code == 503
        assert late.code == "server_shutting_down"
        assert took < 2.5, took
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
