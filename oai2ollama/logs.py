"""Logging set-up: text or one JSON object a line, to standard error.

Nothing here ever logs an API key; prompts appear only with ``--log-bodies``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

# Attributes every LogRecord has; anything else was passed in `extra` and belongs in the output.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger: message``, and for a line about a request, its id and client."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        if request_id is None or record.name == "oai2ollama.access":  # that line says them
            return line
        return f"{line} [id={request_id} client={getattr(record, 'client', None) or '-'}]"


def setup_logging(level: str, fmt: str = "text") -> None:
    # No record here reports its source line, thread or process: skip finding them, which is a
    # good part of the cost of an access-log line (logging's documented optimisation switches).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    global _DIRECT
    _DIRECT = (handler, fmt)
    # aiohttp's own access log would repeat ours.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# The handler `setup_logging` installed and its format, for `write_access`.
_DIRECT: tuple[logging.StreamHandler[Any], str] | None = None
_ACCESS = logging.getLogger("oai2ollama.access")
_SECOND: list[Any] = [None, "", ""]  # the second last formatted: [second, local text, UTC text]


def write_access(message: str, fields: dict[str, Any]) -> bool:
    """Write an access-log line straight to the stream of the handler ``setup_logging``
    installed, exactly as its formatter would, without a LogRecord: that machinery is most of
    the cost of a line, and there is one on every request. False when logging is configured
    otherwise (another handler, a filter, a level that drops it): then log it the usual way."""
    direct = _DIRECT
    if direct is None or _ACCESS.handlers or not _ACCESS.propagate or len(_ACCESS.filters) > 1:
        return False
    handler, fmt = direct
    if logging.getLogger().handlers != [handler] or handler.level > logging.INFO or handler.filters:
        return False
    now = time.time()
    second = int(now)
    if _SECOND[0] != second:
        _SECOND[:] = [
            second,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)),
        ]
    msecs = int((now - second) * 1000)
    if fmt == "json":
        out = {
            "time": f"{_SECOND[2]}.{msecs:03d}Z",
            "level": "info",
            "logger": _ACCESS.name,
            "message": message,
            **fields,
        }
        line = orjson.dumps(out, default=str).decode()
    else:
        line = f"{_SECOND[1]},{msecs:03d} INFO {_ACCESS.name}: {message}"
    with handler.lock:  # type: ignore[union-attr]
        handler.stream.write(line + handler.terminator)
        handler.flush()
    return True
