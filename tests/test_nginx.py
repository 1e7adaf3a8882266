"""Real nginx, configured as docs/deploy.md says, in front of two replicas of the server (real
processes sharing a real Redis as their Responses store) in front of the test Ollama:
round-robin, a conversation continued across replicas, streams unbuffered, and keep-alive
comments that carry a silent stream past nginx's read timeout."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import orjson
import pytest

from . import system_programs
from .conftest import RedisServer, free_port
from .deploy_doc import replace_once, snippet
from .fake_ollama import FakeOllama, Reply

SCRIPT = shutil.which("oai2ollama", path=str(Path(sys.executable).parent)) or shutil.which(
    "oai2ollama"
)
KEY = "nginx-test-key"
READ_TIMEOUT = 2  # seconds: nginx's proxy_read_timeout in this test
KEEPALIVE = 0.5  # seconds: the replicas' --keepalive-interval, well below it


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process started in its own group, with everything it started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@dataclass
class Replicas:
    addresses: list[str]  # host:port of each replica, as nginx's $upstream_addr names them
    logs: list[Path]  # each replica's standard error: its log


@dataclass
class Proxy:
    url: str  # nginx's /v1
    replicas: list[str]  # host:port of each replica, as nginx's $upstream_addr names them
    access_log: Path
    replica_logs: list[Path]

    def log_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []


@pytest.fixture(scope="module")
def replicas(
    _fake_server: FakeOllama, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    assert SCRIPT, "the oai2ollama console script is not installed"
    logs = tmp_path_factory.mktemp("replicas")
    procs: list[subprocess.Popen[bytes]] = []
    addresses = []
    try:
        for i in range(2):
            proc = subprocess.Popen(
                [
                    SCRIPT,
                    "--port",
                    "0",
                    "--ollama-url",
                    _fake_server.url,
                    "--api-key",
                    KEY,
                    "--keepalive-interval",
                    str(KEEPALIVE),
                    "--responses-store",
                    redis_server.url(5),
                    "--trusted-proxy",
                    "127.0.0.1",
                ],
                stdout=subprocess.PIPE,
                stderr=(logs / f"replica{i}.log").open("wb"),
                start_new_session=True,
            )
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline().decode().strip()
            assert line.startswith("export OPENAI_BASE_URL=http://127.0.0.1:"), line
            addresses.append(line.split("//", 1)[1].removesuffix("/v1"))
        for address in addresses:  # the first chat of a process is slower: not measured here
            warm = openai.OpenAI(base_url=f"http://{address}/v1", api_key=KEY, max_retries=0)
            warm.chat.completions.create(
                model="llama3.2", messages=[{"role": "user", "content": "hi"}]
            )
        yield Replicas(addresses, [logs / f"replica{i}.log" for i in range(2)])
    finally:
        for proc in procs:
            stop(proc)


def nginx_conf(tmp: Path, port: int, replicas: list[str]) -> Path:
    """The docs' configuration, with this test's ports and read timeout, in a main file of the
    test's own that keeps every path nginx writes in ``tmp``."""
    site = snippet("nginx.conf")
    site = replace_once(site, "listen 80;", f"listen 127.0.0.1:{port};")
    site = replace_once(site, "server 127.0.0.1:11435;", f"server {replicas[0]};")
    site = replace_once(site, "server 127.0.0.1:11436;", f"server {replicas[1]};")
    site = replace_once(site, "proxy_read_timeout 630s;", f"proxy_read_timeout {READ_TIMEOUT}s;")
    (tmp / "oai2ollama.conf").write_text(site)
    user = "user root;" if os.geteuid() == 0 else ""  # workers may then write in tmp
    main = f"""
daemon off;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    log_format upstream '$request_uri $status $upstream_addr';
    access_log {tmp}/access.log upstream;
    include {tmp}/oai2ollama.conf;
}}
"""
    (tmp / "nginx.conf").write_text(main)
    return tmp / "nginx.conf"


@pytest.fixture(scope="module")
def proxy(replicas: Replicas, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    nginx = system_programs.need("nginx", "nginx")
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    conf = nginx_conf(tmp, port, replicas.addresses)
    error_log = tmp / "error.log"
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp), "-c", str(conf), "-e", str(error_log)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "stderr.log").open("wb"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                text = (tmp / "stderr.log").read_text()
                text += error_log.read_text() if error_log.exists() else ""
                pytest.fail(f"nginx stopped: {text}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "nginx did not start listening"
            time.sleep(0.05)
        yield Proxy(
            f"http://127.0.0.1:{port}/v1", replicas.addresses, tmp / "access.log", replicas.logs
        )
    finally:
        stop(proc)


def sdk(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url, api_key=KEY, max_retries=0, timeout=30)


def wait_for_lines(proxy: Proxy, before: int, count: int) -> list[str]:
    """nginx logs a request just after answering it."""
    deadline = time.monotonic() + 5
    while len(proxy.log_lines()) < before + count and time.monotonic() < deadline:
        time.sleep(0.02)
    return proxy.log_lines()[before:]


def test_requests_alternate_between_the_replicas(proxy: Proxy, ollama: FakeOllama) -> None:
    client = sdk(proxy)
    before = len(proxy.log_lines())
    for _ in range(4):
        assert any(m.id == "llama3.2:latest" for m in client.models.list().data)
    out = client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "hi"}]
    )
    assert out.choices[0].message.content == "Hello! How can I help you today?"
    lines = wait_for_lines(proxy, before, 5)
    assert [line.split()[:2] for line in lines] == [["/v1/models", "200"]] * 4 + [
        ["/v1/chat/completions", "200"]
    ]
    upstreams = [line.split()[2] for line in lines]
    assert set(upstreams) == set(proxy.replicas)
    assert all(a != b for a, b in itertools.pairwise(upstreams)), upstreams


def test_the_replicas_log_the_client_nginx_names_and_keep_the_request_id(
    proxy: Proxy, ollama: FakeOllama
) -> None:
    """With --trusted-proxy naming nginx's address, a replica's access log names the client from
    X-Forwarded-For. (On one machine the test client has nginx's address too, so the address it
    claims in its own X-Forwarded-For is believed; a real client's would not be.)"""
    host, port = proxy.url.removeprefix("http://").removesuffix("/v1").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(
        "GET",
        "/v1/models",
        headers={
            "Authorization": f"Bearer {KEY}",
            "X-Forwarded-For": "203.0.113.9",
            "X-Request-Id": "through-nginx-1",
        },
    )
    answer = conn.getresponse()
    answer.read()
    assert answer.status == 200
    assert answer.getheader("X-Request-Id") == "through-nginx-1"
    deadline = time.monotonic() + 5
    while True:
        lines = [
            line
            for path in proxy.replica_logs
            for line in path.read_text().splitlines()
            if "id=through-nginx-1" in line
        ]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == 1, lines
    assert "GET /v1/models" in lines[0]
    assert "client=203.0.113.9" in lines[0]


def test_a_conversation_continues_on_the_other_replica(proxy: Proxy, ollama: FakeOllama) -> None:
    client = sdk(proxy)
    before = len(proxy.log_lines())
    first = client.responses.create(model="llama3.2", input="My name is Ada.")
    second = client.responses.create(
        model="llama3.2", previous_response_id=first.id, input="What is my name?"
    )
    sent = ollama.last().body["messages"]
    assert sent[0] == {"role": "user", "content": "My name is Ada."}
    assert sent[1] == {"role": "assistant", "content": first.output_text}
    assert client.responses.retrieve(first.id).output_text == first.output_text
    lines = wait_for_lines(proxy, before, 3)
    assert [line.split()[1] for line in lines] == ["200"] * 3
    upstreams = [line.split()[2] for line in lines]
    assert upstreams[0] != upstreams[1] != upstreams[2]  # made on one, continued on the other
    assert second.previous_response_id == first.id


def test_a_stream_comes_through_chunk_by_chunk(proxy: Proxy, ollama: FakeOllama) -> None:
    words = "one two three four five six"
    delay = 0.25
    ollama.queue(Reply(content=words, chunk_delay=delay))
    start = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    stream = sdk(proxy).chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "count"}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic() - start, chunk.choices[0].delta.content))
    assert "".join(text for _, text in arrivals) == words
    times = [t for t, _ in arrivals]
    assert len(times) == 6
    # Ollama sent them 0.25 s apart; buffered, they would arrive together at the end.
    assert times[-1] - times[0] >= 0.6 * 5 * delay, times
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    assert gaps[1] >= 0.4 * delay, times  # at most one pair arrives close together


def test_an_ollama_api_stream_comes_through_line_by_line(proxy: Proxy, ollama: FakeOllama) -> None:
    """Ollama's own API at the root goes through the same location, unbuffered too."""
    delay = 0.25
    ollama.queue(Reply(content="one two three four five six", chunk_delay=delay))
    host, port = proxy.url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    start = time.monotonic()
    try:
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": "count"}]}
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        conn.request("POST", "/api/chat", body=orjson.dumps(body), headers=headers)
        answer = conn.getresponse()
        assert answer.status == 200
        arrivals = []
        while line := answer.readline():
            arrivals.append((time.monotonic() - start, orjson.loads(line)))
    finally:
        conn.close()
    words = [(t, c["message"]["content"]) for t, c in arrivals if c["message"]["content"]]
    assert "".join(w for _, w in words) == "one two three four five six"
    assert arrivals[-1][1]["done"] is True
    times = [t for t, _ in words]
    assert times[-1] - times[0] >= 0.6 * 5 * delay, times
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    assert gaps[1] >= 0.4 * delay, times


def raw_chat(proxy: Proxy, *, stream: bool) -> tuple[int, bytes]:
    """Status and body as they come out of nginx, keep-alive comments included."""
    host, port = proxy.url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=orjson.dumps({**body, "stream": stream}),
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        )
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_keepalives_carry_a_silent_stream_past_the_read_timeout(
    proxy: Proxy, ollama: FakeOllama
) -> None:
    silence = READ_TIMEOUT + 1.0  # the model "loads" for longer than nginx waits
    ollama.queue(Reply(content="late but whole", first_byte_delay=silence))
    start = time.monotonic()
    status, body = raw_chat(proxy, stream=True)
    elapsed = time.monotonic() - start
    assert status == 200
    assert elapsed >= silence
    assert body.count(b": keep-alive\n\n") >= 3  # they went through nginx to the client
    assert body.endswith(b"data: [DONE]\n\n")
    events = [orjson.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "late but whole"


def test_without_keepalives_the_same_silence_is_cut_by_nginx(
    proxy: Proxy, ollama: FakeOllama
) -> None:
    # A non-stream answer sends nothing until done: nginx's read timeout ends it, which shows
    # that the timeout is in force and that the stream above lived thanks to the keep-alives.
    ollama.queue(Reply(content="too late", first_byte_delay=READ_TIMEOUT + 1.0))
    start = time.monotonic()
    status, _ = raw_chat(proxy, stream=False)
    assert status == 504
    assert time.monotonic() - start >= READ_TIMEOUT - 0.1  # nginx waited, then gave up
