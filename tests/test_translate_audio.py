"""Audio translation rules, on plain values: input_audio parts, sniffing, durations, and the
transcription request and answers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.audio import (
    Transcription,
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
    TranscriptionVerbose,
)

from oai2ollama.errors import InvalidRequest
from oai2ollama.translate import audio, chat, responses, transcriptions
from oai2ollama.translate.transcriptions import TranscriptionStream, Upload

from .audio_samples import b64, mp3, wav

# ---- sniffing and duration -----------------------------------------------------------------


def test_sniff_knows_wav_and_mp3_only() -> None:
    assert audio.sniff(wav()) == "wav"
    assert audio.sniff(mp3()) == "mp3"
    assert audio.sniff(mp3(id3=True)) == "mp3"
    assert audio.sniff(b"OggS\0\2" + bytes(30)) is None
    assert audio.sniff(b"\x89PNG\r\n\x1a\n") is None
    assert audio.sniff(b"") is None


def test_wav_duration_comes_from_its_header() -> None:
    assert audio.duration(wav(0.5)) == 0.5
    assert audio.duration(wav(1.25, rate=8000, channels=2)) == 1.25
    assert audio.duration(wav()[:40]) is None  # no data chunk: cannot say


def test_mp3_duration_counts_frames_or_estimates_from_the_bitrate() -> None:
    true_length = 20 * 1152 / 44100
    assert audio.duration(mp3(20)) == pytest.approx(true_length, rel=0.01)
    assert audio.duration(mp3(20, id3=True)) == pytest.approx(true_length, rel=0.01)
    assert audio.duration(mp3(2, xing_frames=1000)) == pytest.approx(1000 * 1152 / 44100)
    assert audio.duration(b"ID3\x04\0\0\0\0\0\0" + bytes(50)) is None


# ---- input_audio parts ---------------------------------------------------------------------


def audio_part(data: str, fmt: str = "wav") -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def chat_body(*parts: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": list(parts)}]}


def chat_refusal(body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        chat.parse_request(body)
    return info.value


def test_input_audio_goes_to_images_and_needs_the_audio_capability() -> None:
    data = b64(wav())
    req = chat.parse_request(chat_body({"type": "text", "text": "What is said?"}, audio_part(data)))
    assert req.payload["messages"] == [
        {"role": "user", "content": "What is said?", "images": [data]}
    ]
    assert req.needs == frozenset({"audio"})
    assert chat.parse_request(chat_body({"type": "text", "text": "hi"})).needs == frozenset()
    # Line breaks in the base64 are allowed (as Ollama's decoder allows them), and removed.
    wrapped = "\n".join(data[i : i + 76] for i in range(0, len(data), 76))
    req = chat.parse_request(chat_body(audio_part(wrapped, "mp3")))
    assert req.payload["messages"][0]["images"] == [data]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        (audio_part("not base64!"), "messages[0].content[0].input_audio.data"),
        (audio_part("QUJD="), "messages[0].content[0].input_audio.data"),
        (audio_part(b64(b"\x89PNG\r\n\x1a\n0000")), "messages[0].content[0].input_audio.data"),
        (audio_part(""), "messages[0].content[0].input_audio.data"),
        (audio_part(b64(wav()), "flac"), "messages[0].content[0].input_audio.format"),
        ({"type": "input_audio", "input_audio": {"format": "wav"}}, None),
        ({"type": "input_audio"}, "messages[0].content[0].input_audio"),
    ],
)
def test_bad_input_audio_is_a_400_naming_the_param(part: Any, param: str | None) -> None:
    err = chat_refusal(chat_body(part))
    assert err.status == 400
    assert err.param == (param or "messages[0].content[0].input_audio.data")


def test_audio_output_is_still_refused() -> None:
    body = chat_body(audio_part(b64(wav())))
    assert chat_refusal({**body, "modalities": ["text", "audio"]}).param == "modalities"
    assert chat_refusal({**body, "audio": {"voice": "alloy", "format": "wav"}}).param == "audio"


def test_responses_input_audio_content_goes_the_same_way() -> None:
    data = b64(mp3())
    item = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Transcribe."},
            {"type": "input_audio", "input_audio": {"data": data, "format": "mp3"}},
        ],
    }
    req = responses.parse_request({"model": "m", "input": [item]})
    assert req.chat.payload["messages"][0]["images"] == [data]
    assert req.chat.needs == frozenset({"audio"})
    item["content"][1]["input_audio"]["format"] = "ogg"  # type: ignore[index]
    with pytest.raises(InvalidRequest) as info:
        responses.parse_request({"model": "m", "input": [item]})
    assert info.value.param == "input[0].content[1].input_audio.format"


# ---- transcription request -----------------------------------------------------------------


def parse(upload: bytes | None = None, **fields: str | list[str]) -> Any:
    fields.setdefault("model", "gemma4:e4b")
    form = {k: v if isinstance(v, list) else [v] for k, v in fields.items()}
    return transcriptions.parse_request(form, Upload(wav() if upload is None else upload, "a.wav"))


def refused(upload: bytes | None = None, **fields: str | list[str]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse(upload, **fields)
    return info.value


def test_transcription_becomes_a_chat_with_the_audio_attached() -> None:
    data = wav(0.75)
    req = parse(data, language="de", prompt="Namen: Jörg, Ilse.", keep_alive="10m")
    assert (req.model, req.stream, req.response_format, req.language) == (
        "gemma4:e4b",
        False,
        "json",
        "de",
    )
    assert req.duration == 0.75
    system, user = req.payload["messages"]
    assert system["role"] == "system"
    assert "'de'" in system["content"]
    assert "Namen: Jörg, Ilse." in system["content"]
    assert user == {"role": "user", "content": transcriptions.USER_PROMPT, "images": [b64(data)]}
    assert req.payload["options"] == {"temperature": 0.0}
    assert req.payload["stream"] is False
    assert req.payload["keep_alive"] == "10m"
    assert "logprobs" not in req.payload


def test_transcription_fields_that_shape_the_request() -> None:
    req = parse(
        stream="true",
        temperature="0.4",
        keep_alive="300",
        include=["logprobs"],
        keywords=["Ollama", "oai2ollama"],
        languages=["en", "fr"],
        chunking_strategy="auto",
    )
    assert req.stream is True
    assert req.payload["stream"] is True
    assert req.payload["options"] == {"temperature": 0.4}
    assert req.payload["keep_alive"] == 300
    assert req.payload["logprobs"] is True
    assert req.logprobs
    system = req.payload["messages"][0]["content"]
    assert "Ollama, oai2ollama" in system
    assert "en, fr" in system


@pytest.mark.parametrize(
    ("fields", "upload", "param", "status"),
    [
        ({"model": ""}, None, "model", 400),
        ({}, b"", "file", 400),
        ({}, b"OggS" + bytes(40), "file", 400),
        ({"response_format": "srt"}, None, "response_format", 400),
        ({"response_format": "vtt"}, None, "response_format", 400),
        ({"response_format": "diarized_json"}, None, "response_format", 400),
        ({"response_format": "xml"}, None, "response_format", 400),
        ({"timestamp_granularities": ["word"]}, None, "timestamp_granularities", 400),
        ({"temperature": "1.5"}, None, "temperature", 400),
        ({"temperature": "warm"}, None, "temperature", 400),
        ({"stream": "maybe"}, None, "stream", 400),
        ({"include": ["everything"]}, None, "include", 400),
    ],
)
def test_transcription_refusals_name_the_field(
    fields: dict[str, Any], upload: bytes | None, param: str, status: int
) -> None:
    err = refused(upload, **fields)
    assert (err.param, err.status) == (param, status)


def test_a_missing_file_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        transcriptions.parse_request({"model": ["m"]}, None)
    assert info.value.param == "file"


def test_array_fields_with_or_without_brackets() -> None:
    assert transcriptions.field_name("include[]") == "include"
    assert transcriptions.field_name("include") == "include"


# ---- transcription answers -----------------------------------------------------------------

ANSWER = {
    "model": "gemma4:e4b",
    "message": {"role": "assistant", "content": "\n Hello, world. \n"},
    "done": True,
    "done_reason": "stop",
    "prompt_eval_count": 90,
    "eval_count": 4,
    "logprobs": [{"token": "Hello", "logprob": -0.1, "bytes": [72, 101, 108, 108, 111]}],
}


def test_each_response_format() -> None:
    body, kind = transcriptions.render(parse(), ANSWER)
    assert kind == "application/json"
    out = Transcription.model_validate(orjson.loads(body))
    assert out.text == "Hello, world."
    assert out.usage is not None
    assert out.usage.type == "tokens"
    assert (out.usage.input_tokens, out.usage.output_tokens, out.usage.total_tokens) == (90, 4, 94)
    assert out.logprobs is None

    body, kind = transcriptions.render(parse(response_format="text"), ANSWER)
    assert (body, kind) == (b"Hello, world.", "text/plain")

    body, _ = transcriptions.render(parse(wav(2.0), response_format="verbose_json"), ANSWER)
    verbose = TranscriptionVerbose.model_validate(orjson.loads(body))
    assert (verbose.text, verbose.duration, verbose.language) == ("Hello, world.", 2.0, "")
    assert verbose.usage is not None
    assert verbose.usage.seconds == 2.0
    assert verbose.segments is None
    assert verbose.words is None

    body, _ = transcriptions.render(parse(include=["logprobs"]), ANSWER)
    logprobs = Transcription.model_validate(orjson.loads(body)).logprobs
    assert logprobs is not None
    assert logprobs[0].token == "Hello"


def test_an_error_in_the_answer_is_raised() -> None:
    with pytest.raises(Exception, match="runner died"):
        transcriptions.render(parse(), {"error": "runner died"})


def events(raw: bytes) -> list[Any]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: ") and block != "data: [DONE]":
            out.append(orjson.loads(block[6:]))
    return out


def test_stream_of_deltas_then_done() -> None:
    stream = TranscriptionStream(parse(stream="true", include=["logprobs"]))
    assert stream.start() == b""
    raw = b""
    chunks = ["\n", " Hello,", " world.", " "]
    for piece in chunks:
        lp = [{"token": piece, "logprob": -0.5}]
        raw += stream.feed({"message": {"content": piece}, "done": False, "logprobs": lp})
    raw += stream.feed({"message": {"content": ""}, "done": True, **{"eval_count": 4}})
    assert stream.done
    assert stream.usage["completion_tokens"] == 4
    assert raw.endswith(b"data: [DONE]\n\n")
    *deltas, done = events(raw)
    parsed = [TranscriptionTextDeltaEvent.model_validate(d) for d in deltas]
    assert [d.delta for d in parsed] == ["Hello,", " world.", " "]
    assert parsed[0].logprobs is not None
    final = TranscriptionTextDoneEvent.model_validate(done)
    assert final.text == "Hello, world."
    assert final.usage is not None
    assert final.usage.output_tokens == 4
    assert final.logprobs is not None
    assert len(final.logprobs) == 4


def test_stream_error_line_is_raised() -> None:
    stream = TranscriptionStream(parse(stream="true"))
    with pytest.raises(Exception, match="boom"):
        stream.feed({"error": "boom"})
