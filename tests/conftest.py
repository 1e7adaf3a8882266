"""Fixtures: the test Ollama server and shims in front of it, on loopback ports.

Both servers run in one background event loop, so the synchronous ``openai`` client, the async
one (in the test's own loop) and raw HTTP clients all reach them over real TCP.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from oai2ollama.config import Settings
from oai2ollama.server import bound_port, start

from . import system_programs
from .fake_ollama import FakeOllama, LoopThread, image_app, serve_app


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture(scope="session")
def _fake_server(loop_thread: LoopThread) -> Iterator[FakeOllama]:
    fake = FakeOllama()
    runner, port = loop_thread.run(serve_app(fake.app()))
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    loop_thread.run(runner.cleanup())


@pytest.fixture
def ollama(_fake_server: FakeOllama) -> FakeOllama:
    """The test Ollama server, reset for this test."""
    _fake_server.reset()
    return _fake_server


ShimFactory = Callable[..., str]


@pytest.fixture(scope="session")
def make_shim(loop_thread: LoopThread, _fake_server: FakeOllama) -> Iterator[ShimFactory]:
    """Start a shim in front of the test Ollama (once per distinct settings); return its URL."""
    runners: dict[Settings, tuple[web.AppRunner, str]] = {}

    def factory(**overrides: Any) -> str:
        settings = Settings(host="127.0.0.1", port=0, ollama_url=_fake_server.url)
        settings = dataclasses.replace(settings, **overrides)
        if settings not in runners:
            runner = loop_thread.run(start(settings))
            port = bound_port(runner, 0)
            runners[settings] = (runner, f"http://127.0.0.1:{port}/v1")
        return runners[settings][1]

    yield factory
    for runner, _ in runners.values():
        loop_thread.run(runner.cleanup())


@pytest.fixture
def base_url(make_shim: ShimFactory, ollama: FakeOllama) -> str:
    return make_shim()


@pytest.fixture
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=20)


@pytest.fixture
def aclient(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=20)


@pytest.fixture(scope="session")
def image_server(loop_thread: LoopThread) -> Iterator[str]:
    """A web server with images on loopback; returns its base URL."""
    runner, port = loop_thread.run(serve_app(image_app()))
    yield f"http://127.0.0.1:{port}"
    loop_thread.run(runner.cleanup())


class RedisServer:
    """A real ``redis-server`` on a free loopback port, with its files in a temporary directory
    and no persistence: nothing outlives the test session."""

    def __init__(self, directory: Path, binary: str) -> None:
        self.directory = directory
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "redis-server exited at start"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """``redis-server`` from the system (Debian's ``redis-server`` package, which ``.ci/run``
    installs); in CI it must be there."""
    binary = system_programs.need("redis-server", "redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis"), binary)
    server.start()
    yield server
    server.stop()
