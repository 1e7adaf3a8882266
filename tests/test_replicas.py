"""Two replicas of the server, as real processes on their own ports, sharing one real Redis:
a conversation moves between them and outlives a restart."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import openai
import pytest

from .conftest import RedisServer, free_port
from .fake_ollama import FakeOllama
from .test_process import SCRIPT

KEYS = ("team-key-one", "team-key-two")


class Replica:
    def __init__(self, store_url: str, ollama_url: str) -> None:
        self.store_url = store_url
        self.ollama_url = ollama_url
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.clients: dict[str, openai.OpenAI] = {}

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        assert SCRIPT, "the oai2ollama console script is not installed"
        self.clients.clear()
        env = {
            **os.environ,
            "OLLAMA_HOST": self.ollama_url,
            "OAI2OLLAMA_API_KEY": ",".join(KEYS),
            "OAI2OLLAMA_RESPONSES_STORE": self.store_url,
        }
        self.proc = subprocess.Popen(
            [SCRIPT, "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def wait_ready(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == f"export OPENAI_BASE_URL=http://127.0.0.1:{self.port}/v1", line
        self.url = line.split("=", 1)[1]

    def stop(self) -> str:
        """Stop it as a service manager does; return its log."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(15) == 0
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def client(self, key: str = KEYS[0]) -> openai.OpenAI:
        if key not in self.clients:
            self.clients[key] = openai.OpenAI(
                base_url=self.url, api_key=key, max_retries=0, timeout=20
            )
        return self.clients[key]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def replicas(redis_server: RedisServer, ollama: FakeOllama) -> Iterator[tuple[Replica, Replica]]:
    a, b = Replica(redis_server.url(3), ollama.url), Replica(redis_server.url(3), ollama.url)
    try:
        a.spawn()
        b.spawn()
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        a.kill()
        b.kill()


def test_a_conversation_moves_between_replicas_and_outlives_a_restart(
    replicas: tuple[Replica, Replica], ollama: FakeOllama
) -> None:
    a, b = replicas
    first = a.client().responses.create(model="llama3.2", input="My name is Ada.")
    second = b.client().responses.create(
        model="llama3.2", previous_response_id=first.id, input="What is my name?"
    )
    sent = ollama.last().body["messages"]
    assert sent[0] == {"role": "user", "content": "My name is Ada."}
    assert sent[1] == {"role": "assistant", "content": first.output_text}
    assert sent[2] == {"role": "user", "content": "What is my name?"}

    assert b.client().responses.retrieve(first.id).output_text == first.output_text
    assert b.client().responses.retrieve(second.id).previous_response_id == first.id
    with pytest.raises(openai.NotFoundError):  # another key, on either replica
        b.client(KEYS[1]).responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError):
        a.client(KEYS[1]).responses.retrieve(first.id)

    b.client().responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):  # deleted for every replica
        a.client().responses.retrieve(first.id)

    log = a.stop()
    assert f"Responses store: Redis at {a.store_url}" in log
    a.start()
    again = a.client().responses.retrieve(second.id)
    assert again.output_text == second.output_text
    assert again.id == second.id

    # A streamed continuation on the restarted replica, read back on the other one.
    with a.client().responses.stream(
        model="llama3.2", previous_response_id=second.id, input="Thanks!"
    ) as stream:
        third = stream.get_final_response()
    sent = ollama.last().body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    assert b.client().responses.retrieve(third.id).output_text == third.output_text
    assert "Traceback" not in a.stop() + b.stop()
