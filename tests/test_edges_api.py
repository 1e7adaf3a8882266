"""The edges of HTTP: requests aiohttp's parser refuses, slow and idle clients, and what the log
says about them."""

from __future__ import annotations

import contextlib
import logging
import socket
import time

import orjson
import pytest

from .conftest import ShimFactory
from .fake_ollama import FakeOllama


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


def exchange(url: str, raw: bytes, *, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a fresh connection and read the answer until the server closes it."""
    with socket.create_connection(address(url), timeout=timeout) as sock:
        # If the server stops reading, its answer may already be on its way: read it.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
    return parse(b"".join(chunks))


def parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), data[:200]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def is_openai_error(body: bytes, status: int) -> dict[str, object]:
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    return error


SECRET = "sk-do-not-log-me"
MALFORMED = [
    # (raw request, expected status)
    (b"get /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + SECRET.encode()
        + b"\x01\r\n\r\n",
        400,
    ),
    (b"GET /v1/mo\x01dels HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + SECRET.encode()
        + b"x" * 9000
        + b"\r\n\r\n",
        431,
    ),
    (
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        + b"\r\n",
        431,
    ),
    (b"GET /v1/models?" + b"q" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
]


@pytest.mark.parametrize(("raw", "status"), MALFORMED)
def test_parser_errors_are_openai_errors_and_log_no_secret(
    base_url: str, raw: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    got, headers, body = exchange(base_url, raw)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert headers["x-request-id"]
    error = is_openai_error(body, status)
    assert SECRET not in str(error["message"])
    assert SECRET not in caplog.text
    assert "\\x01" not in caplog.text
    assert "Traceback" not in caplog.text


def test_a_megabyte_header_gets_431_not_a_reset(base_url: str) -> None:
    raw = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    status, _, body = exchange(base_url, raw)
    assert status == 431
    assert is_openai_error(body, 431)["code"] == "request_header_fields_too_large"


def test_a_stream_of_malformed_requests_does_not_flood_the_log(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(30):
        exchange(base_url, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad\x01: y\r\n\r\n")
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) <= 3
    assert all(r.exc_info is None for r in caplog.records)


# ---- slow and idle clients -----------------------------------------------------------------


def closed_within(
    url: str, first: bytes, seconds: float, *, drip: bytes = b""
) -> tuple[float, bytes]:
    """Open a connection, send ``first``, then ``drip`` every 0.2 s; return when the server
    closes it (time taken, bytes received)."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(address(url), timeout=0.2) as sock:
        if first:
            sock.sendall(first)
        while time.monotonic() - started < seconds:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if drip:
                    try:
                        sock.sendall(drip)
                    except OSError:
                        break
                continue
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
        else:
            pytest.fail(f"the connection was still open after {seconds} s")
    return time.monotonic() - started, received


def test_dribbled_headers_time_out(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    url = make_shim(client_header_timeout=1.0, client_idle_timeout=30.0)
    took, received = closed_within(url, b"GET /v1/models HTTP/1.1\r\n", 5, drip=b"X-A: b\r\n")
    assert 0.8 < took < 3
    if received:  # an answer is optional; if there is one, it is an OpenAI error
        status, _, body = parse(received)
        assert status == 408
        assert is_openai_error(body, 408)["code"] == "request_timeout"


def test_dribbled_body_times_out_with_408(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    url = make_shim(client_body_timeout=1.0)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )
    took, received = closed_within(url, head, 15, drip=b" ")
    status, _, body = parse(received)
    assert status == 408
    assert is_openai_error(body, 408)["code"] == "request_timeout"
    assert took < 13
    assert ollama.requests == []


def test_idle_connections_are_closed(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    url = make_shim(client_idle_timeout=1.0)
    took, _ = closed_within(url, b"", 5)  # never says anything
    assert 0.8 < took < 3
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    took, received = closed_within(url, request, 5)  # idle after an answer
    assert received.startswith(b"HTTP/1.1 200")
    assert 0.8 < took < 3


def test_client_timeouts_default_to_finite_values() -> None:
    from oai2ollama.config import Settings

    settings = Settings()
    assert 0 < settings.client_header_timeout <= 60
    assert 0 < settings.client_body_timeout <= 300
    assert 0 < settings.client_idle_timeout <= 300
