"""``POST /v1/audio/transcriptions``: a multipart upload, answered by an audio model's chat.

The upload is read part by part with its own size limit (OpenAI's 25 MB for the file), not the
server's JSON body limit; the rest follows the chat flow: aliases, profiles, the limiter, metrics.
"""

from __future__ import annotations

import logging

from aiohttp import BodyPartReader, web

from .errors import InvalidRequest, PayloadTooLarge
from .openai_face import one_stream, stream_answer
from .state import CATALOG, EXCHANGE, LIMITER, OLLAMA, SETTINGS
from .translate import audio, transcriptions
from .translate.stream import usage_from
from .translate.transcriptions import MAX_FILE_BYTES, Upload

log = logging.getLogger("oai2ollama")

MAX_FIELD_BYTES = 64 * 1024  # a prompt or a list of keywords; far more than any real one
MAX_FIELDS = 256


async def create_transcription(request: web.Request) -> web.StreamResponse:
    fields, upload = await read_form(request)
    if request.app[SETTINGS].log_bodies:
        size = len(upload.data) if upload else 0
        log.debug("%s %s fields: %s; file: %d bytes", request.method, request.path, fields, size)
    req = transcriptions.parse_request(fields, upload)
    exchange = request[EXCHANGE]
    exchange.model = req.model
    app = request.app
    await app[CATALOG].require(req.model, (audio.CAPABILITY,))
    async with app[LIMITER].slot():
        target = exchange.target = await app[CATALOG].prepare(req.payload, req.model)
        ollama = app[OLLAMA]
        if not req.stream:
            answer = await ollama.post("/api/chat", req.payload, model=target)
            body, content_type = transcriptions.render(req, answer)
            exchange.usage = usage_from(answer)
            return web.Response(body=body, content_type=content_type, charset="utf-8")
        translator = transcriptions.TranscriptionStream(req)
        events = one_stream(ollama, "/api/chat", req.payload, target, translator)
        try:
            return await stream_answer(request, events, None)
        finally:
            if translator.done:
                exchange.usage = translator.usage


async def read_form(request: web.Request) -> tuple[dict[str, list[str]], Upload | None]:
    """The form fields by name (``include[]`` → ``include``) and the ``file`` part."""
    if not request.content_type.startswith("multipart/form-data"):
        raise InvalidRequest(
            "This endpoint takes a multipart/form-data body (fields 'file' and 'model', ...), "
            f"not {request.content_type or 'an unspecified type'}.",
            code="invalid_body",
        )
    fields: dict[str, list[str]] = {}
    upload: Upload | None = None
    count = 0
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise InvalidRequest("Nested multipart bodies are not accepted.")
            count += 1
            if count > MAX_FIELDS:
                raise InvalidRequest(f"The form has more than {MAX_FIELDS} fields.")
            if part.name == "file":
                data = await _read_part(part, MAX_FILE_BYTES)
                if data is None:
                    raise PayloadTooLarge(
                        f"The uploaded 'file' is larger than the limit of {MAX_FILE_BYTES} bytes "
                        "(25 MB). Split the audio, or compress it (e.g. to 16 kHz mono MP3).",
                        param="file",
                    )
                upload = Upload(data, part.filename)
                continue
            value = await _read_part(part, MAX_FIELD_BYTES)
            name = transcriptions.field_name(part.name or "")
            if value is None:
                raise InvalidRequest(
                    f"The form field '{name}' is longer than {MAX_FIELD_BYTES} bytes.", param=name
                )
            try:
                fields.setdefault(name, []).append(value.decode())
            except UnicodeDecodeError:
                raise InvalidRequest(
                    f"The form field '{name}' is not UTF-8 text.", param=name
                ) from None
    except ValueError as exc:  # aiohttp's word for a malformed body
        raise InvalidRequest(
            f"The multipart body is malformed ({exc}).", code="invalid_body"
        ) from None
    return fields, upload


async def _read_part(part: BodyPartReader, limit: int) -> bytes | None:
    """The part's bytes, or None as soon as there are more than ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(256 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def add_routes(app: web.Application) -> None:
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/audio/transcriptions", create_transcription)
