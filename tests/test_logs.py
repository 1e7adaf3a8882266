"""The access line written straight to the stream is the line logging itself would write."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from oai2ollama import logs

FIELDS = {
    "request_id": "abc",
    "client": "127.0.0.1",
    "method": "POST",
    "path": "/v1/chat/completions",
    "model": "m",
    "local_model": None,
    "stream": False,
    "status": 200,
    "error": None,
    "duration_ms": 1.5,
    "prompt_tokens": 1,
    "completion_tokens": 2,
}
ACCESS = logging.getLogger("oai2ollama.access")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, direct = root.handlers[:], root.level, logs._DIRECT
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logs._DIRECT = direct


def configured(fmt: str) -> io.StringIO:
    logs.setup_logging("info", fmt)
    buffer = io.StringIO()
    logging.getLogger().handlers[0].stream = buffer  # type: ignore[attr-defined]
    return buffer


@pytest.mark.usefixtures("restore_logging")
def test_a_direct_text_line_is_the_formatters_line() -> None:
    buffer = configured("text")
    ACCESS.info("%s", "POST /v1/chat/completions m 200", extra=FIELDS)
    assert logs.write_access("POST /v1/chat/completions m 200", FIELDS)
    logged, direct = buffer.getvalue().splitlines()
    # The same but for the clock: "2026-12-01 21:36:07,714" is 23 characters.
    assert logged[23:] == direct[23:] == " INFO oai2ollama.access: POST /v1/chat/completions m 200"
    assert direct[:23].count(":") == 2
    assert direct[19] == ","


@pytest.mark.usefixtures("restore_logging")
def test_a_direct_json_line_is_the_formatters_line() -> None:
    buffer = configured("json")
    ACCESS.info("%s", "a line", extra=FIELDS)
    assert logs.write_access("a line", FIELDS)
    logged, direct = (orjson.loads(line) for line in buffer.getvalue().splitlines())
    assert logged.pop("time")[:10] == direct.pop("time")[:10]
    assert list(logged.items()) == list(direct.items())
    assert direct["request_id"] == "abc"
    assert direct["message"] == "a line"


@pytest.mark.usefixtures("restore_logging")
def test_other_logging_set_ups_get_the_line_through_logging() -> None:
    configured("text")
    extra = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(extra)
    assert not logs.write_access("x", FIELDS)
    logging.getLogger().removeHandler(extra)
    ACCESS.addHandler(extra)
    try:
        assert not logs.write_access("x", FIELDS)
    finally:
        ACCESS.removeHandler(extra)
    logs._DIRECT = None  # logging set up by someone else entirely
    assert not logs.write_access("x", FIELDS)
