"""Audio end to end: the real ``openai`` client's transcriptions, and ``input_audio`` parts in
chat and Responses, → shim → the test Ollama (which knows one audio model)."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import aiohttp
import openai
import orjson
import pytest
from openai.types.audio import (
    Transcription,
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
    TranscriptionVerbose,
)
from openai.types.chat import ChatCompletion

from oai2ollama.policy import ModelPolicy, Profile
from oai2ollama.translate.transcriptions import MAX_FILE_BYTES

from .audio_samples import b64, mp3, wav
from .conftest import ShimFactory
from .fake_ollama import AUDIO_MODELS, FakeOllama, Reply

AUDIO_MODEL = "gemma4:e4b"
SPOKEN = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(autouse=True)
def _audio_model(ollama: FakeOllama) -> None:
    ollama.models.update(AUDIO_MODELS)


def chat_calls(ollama: FakeOllama) -> int:
    return sum(r.path == "/api/chat" for r in ollama.requests)


# ---- /v1/audio/transcriptions --------------------------------------------------------------


def test_transcription_json(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content=" " + SPOKEN + "\n", prompt_eval_count=120, eval_count=11))
    audio = wav(1.0)
    out = client.audio.transcriptions.create(
        model=AUDIO_MODEL,
        file=("speech.wav", audio, "audio/wav"),
        language="en",
        prompt="A pangram.",
    )
    assert isinstance(out, Transcription)
    assert out.text == SPOKEN
    assert out.usage is not None
    assert out.usage.type == "tokens"
    assert (out.usage.input_tokens, out.usage.output_tokens) == (120, 11)
    sent = ollama.last().body
    assert sent["model"] == AUDIO_MODEL
    assert sent["stream"] is False
    assert sent["options"] == {"temperature": 0.0}
    system, user = sent["messages"]
    assert system["role"] == "system"
    assert "'en'" in system["content"]
    assert "A pangram." in system["content"]
    assert user["images"] == [b64(audio)]


def test_transcription_text_and_verbose_json(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content=SPOKEN), Reply(content=SPOKEN))
    text = client.audio.transcriptions.create(
        model=AUDIO_MODEL, file=("a.mp3", mp3(40)), response_format="text"
    )
    assert text == SPOKEN
    verbose = client.audio.transcriptions.create(
        model=AUDIO_MODEL, file=("a.wav", wav(1.5)), response_format="verbose_json", language="en"
    )
    assert isinstance(verbose, TranscriptionVerbose)
    assert (verbose.text, verbose.duration, verbose.language) == (SPOKEN, 1.5, "en")
    assert verbose.usage is not None
    assert verbose.usage.seconds == 1.5


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_timestamped_formats_are_refused(
    client: openai.OpenAI, ollama: FakeOllama, fmt: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(
            model=AUDIO_MODEL,
            file=("a.wav", wav()),
            response_format=fmt,  # type: ignore[arg-type]
        )
    assert info.value.param == "response_format"
    assert "timestamps" in info.value.message
    assert chat_calls(ollama) == 0


def test_transcription_stream(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content=SPOKEN, logprobs=True, prompt_eval_count=80, eval_count=9))
    stream = client.audio.transcriptions.create(
        model=AUDIO_MODEL, file=("a.wav", wav()), stream=True, include=["logprobs"]
    )
    events = list(stream)
    *deltas, done = events
    assert deltas
    assert all(isinstance(e, TranscriptionTextDeltaEvent) for e in deltas)
    assert "".join(e.delta for e in deltas) == SPOKEN  # type: ignore[union-attr]
    assert all(e.logprobs for e in deltas)  # type: ignore[union-attr]
    assert isinstance(done, TranscriptionTextDoneEvent)
    assert done.text == SPOKEN
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (80, 9)
    assert ollama.last().body["stream"] is True
    assert ollama.last().body["logprobs"] is True


def test_transcription_stream_async(aclient: openai.AsyncOpenAI, ollama: FakeOllama) -> None:
    async def run() -> list[str]:
        ollama.queue(Reply(content=SPOKEN))
        stream = await aclient.audio.transcriptions.create(
            model=AUDIO_MODEL, file=("a.mp3", mp3(10)), stream=True
        )
        return [e.type async for e in stream]

    types = asyncio.run(run())
    assert types[-1] == "transcript.text.done"
    assert set(types[:-1]) == {"transcript.text.delta"}


def test_a_failure_mid_stream_ends_with_an_error(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="one two three four", error_after=2, error="runner crashed"))
    stream = client.audio.transcriptions.create(
        model=AUDIO_MODEL, file=("a.wav", wav()), stream=True
    )
    with pytest.raises(openai.APIError, match="runner crashed"):
        list(stream)


def test_a_model_without_audio_is_refused_up_front(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(model="llama3.2", file=("a.wav", wav()))
    assert info.value.param == "model"
    assert "llama3.2" in info.value.message
    assert "audio" in info.value.message
    assert chat_calls(ollama) == 0


def test_not_audio_and_empty_files_are_refused(client: openai.OpenAI, ollama: FakeOllama) -> None:
    for data in (b"OggS" + bytes(100), b""):
        with pytest.raises(openai.BadRequestError) as info:
            client.audio.transcriptions.create(model=AUDIO_MODEL, file=("a.ogg", data))
        assert info.value.param == "file"
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/audio/transcriptions", body={"model": AUDIO_MODEL}, cast_to=Transcription)
    assert "multipart/form-data" in info.value.message
    assert chat_calls(ollama) == 0


def test_a_file_over_25_mb_is_413(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    # The server's JSON limit is lower than the upload limit; the upload has its own.
    base_url = make_shim(max_body_size=1024 * 1024)
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=60)
    big = wav(0.01) + bytes(MAX_FILE_BYTES)
    with pytest.raises(openai.APIStatusError) as info:
        client.audio.transcriptions.create(model=AUDIO_MODEL, file=("big.wav", big))
    assert info.value.status_code == 413
    assert isinstance(info.value.body, dict)
    assert info.value.body["param"] == "file"
    assert "25 MB" in info.value.body["message"]
    # Just under the limit is taken, past the 1 MiB JSON limit.
    ollama.queue(Reply(content=SPOKEN))
    fits = wav(0.01) + bytes(2 * 1024 * 1024)
    assert client.audio.transcriptions.create(model=AUDIO_MODEL, file=("a.wav", fits)).text
    assert chat_calls(ollama) == 1


def test_aliases_profiles_and_keep_alive_apply(make_shim: ShimFactory, ollama: FakeOllama) -> None:
    policy = ModelPolicy(
        aliases=(("whisper-1", AUDIO_MODEL),),
        models=((AUDIO_MODEL, Profile(num_ctx=8192)),),
        client_overrides=True,
    )
    client = openai.OpenAI(base_url=make_shim(policy=policy), api_key="x", max_retries=0)
    ollama.queue(Reply(content=SPOKEN))
    out = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", wav()), extra_body={"keep_alive": "2h"}
    )
    assert out.text == SPOKEN
    sent = ollama.last().body
    assert sent["model"] == AUDIO_MODEL
    assert sent["options"] == {"temperature": 0.0, "num_ctx": 8192}
    assert sent["keep_alive"] == "2h"
    # An alias to a model that cannot hear.
    policy_deaf = ModelPolicy(aliases=(("whisper-1", "llama3.2"),))
    deaf = openai.OpenAI(base_url=make_shim(policy=policy_deaf), api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        deaf.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav()))
    assert "whisper-1" in info.value.message
    assert "llama3.2" in info.value.message


def metric(base_url: str, pattern: str) -> float:
    root = base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/metrics") as r:
        text = r.read().decode()
    found = re.search(pattern + r" (\S+)", text)
    return float(found.group(1)) if found else 0.0


def test_transcriptions_are_counted(
    client: openai.OpenAI, base_url: str, ollama: FakeOllama
) -> None:
    requests = (
        r'oai2ollama_requests_total\{route="/v1/audio/transcriptions",'
        r'model="gemma4:e4b",status="200"\}'
    )
    tokens = r'oai2ollama_tokens_total\{direction="completion",model="gemma4:e4b"\}'
    before = metric(base_url, requests), metric(base_url, tokens)
    ollama.queue(Reply(content=SPOKEN, eval_count=9), Reply(content=SPOKEN, eval_count=5))
    client.audio.transcriptions.create(model=AUDIO_MODEL, file=("a.wav", wav()))
    list(client.audio.transcriptions.create(model=AUDIO_MODEL, file=("a.wav", wav()), stream=True))
    assert metric(base_url, requests) == before[0] + 2
    assert metric(base_url, tokens) == before[1] + 14


# ---- input_audio in chat and Responses ------------------------------------------------------


def audio_message(data: str, fmt: str = "wav") -> list[dict[str, object]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is said here?"},
                {"type": "input_audio", "input_audio": {"data": data, "format": fmt}},
            ],
        }
    ]


def test_chat_carries_audio_to_an_audio_model(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="Someone says hello."))
    data = b64(mp3())
    out = client.chat.completions.create(model=AUDIO_MODEL, messages=audio_message(data, "mp3"))
    ChatCompletion.model_validate(out.model_dump())
    assert out.choices[0].message.content == "Someone says hello."
    assert ollama.last().body["messages"] == [
        {"role": "user", "content": "What is said here?", "images": [data]}
    ]


def test_chat_audio_to_a_model_without_audio_is_400(
    client: openai.OpenAI, ollama: FakeOllama
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="llava:7b", messages=audio_message(b64(wav())))
    assert info.value.param == "model"
    assert "'llava:7b'" in info.value.message
    assert "audio" in info.value.message
    assert chat_calls(ollama) == 0


def test_chat_bad_audio_is_400_naming_the_param(client: openai.OpenAI, ollama: FakeOllama) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=AUDIO_MODEL, messages=audio_message("%%%"))
    assert info.value.param == "messages[0].content[1].input_audio.data"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=AUDIO_MODEL, messages=audio_message(b64(wav()), "aac"))
    assert info.value.param == "messages[0].content[1].input_audio.format"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=AUDIO_MODEL,
            messages=audio_message(b64(wav())),
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "wav"},
        )
    assert info.value.param == "modalities"
    assert chat_calls(ollama) == 0


def test_responses_carry_audio(client: openai.OpenAI, ollama: FakeOllama) -> None:
    ollama.queue(Reply(content="A fox."))
    data = b64(wav())
    item = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Summarise."},
            {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}},
        ],
    }
    out = client.responses.create(model=AUDIO_MODEL, input=[item], store=False)  # type: ignore[list-item]
    assert out.output_text == "A fox."
    assert ollama.last().body["messages"][0]["images"] == [data]
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="llama3.2", input=[item], store=False)  # type: ignore[list-item]
    assert info.value.param == "model"


def test_models_show_the_audio_capability(client: openai.OpenAI) -> None:
    listed = {m.id: m for m in client.models.list()}
    assert "audio" in (listed[AUDIO_MODEL].model_extra or {})["capabilities"]
    assert "audio" not in (listed["llama3.2:latest"].model_extra or {})["capabilities"]
    one = client.models.retrieve(AUDIO_MODEL)
    assert "audio" in (one.model_extra or {})["capabilities"]


def test_the_test_ollama_refuses_audio_for_a_model_without_it(ollama: FakeOllama) -> None:
    def post(model: str) -> urllib.request.Request:
        body = {
            "model": model,
            "stream": False,
            "messages": [{"role": "user", "content": "x", "images": [b64(wav())]}],
        }
        return urllib.request.Request(f"{ollama.url}/api/chat", data=orjson.dumps(body))

    with urllib.request.urlopen(post(AUDIO_MODEL)) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(post("llama3.2"))
    assert info.value.code == 500
    assert "audio input is not supported" in info.value.read().decode()


def test_plain_multipart_as_curl_sends_it(base_url: str, ollama: FakeOllama) -> None:
    url = f"{base_url}/audio/transcriptions"

    def form(**fields: str) -> aiohttp.FormData:
        data = aiohttp.FormData()
        for name, value in fields.items():
            data.add_field(name, value)
        data.add_field("file", wav(), filename="a.wav", content_type="audio/wav")
        return data

    async def post(data: aiohttp.FormData | bytes, **headers: str) -> tuple[int, str, str]:
        async with aiohttp.ClientSession() as s, s.post(url, data=data, headers=headers) as r:
            return r.status, r.headers["Content-Type"], await r.text()

    ollama.queue(Reply(content=SPOKEN))
    status, kind, text = asyncio.run(post(form(model=AUDIO_MODEL, response_format="text")))
    assert (status, text) == (200, SPOKEN)
    assert kind.startswith("text/plain")
    # Array fields without brackets are read too.
    status, _, text = asyncio.run(post(form(model=AUDIO_MODEL, timestamp_granularities="word")))
    assert status == 400
    assert orjson.loads(text)["error"]["param"] == "timestamp_granularities"
    # A body that is not the multipart it claims to be.
    bad = {"Content-Type": "multipart/form-data; boundary=y"}
    status, _, text = asyncio.run(post(b"--x\r\nnot a part", **bad))
    assert status == 400
    assert orjson.loads(text)["error"]["type"] == "invalid_request_error"
    assert chat_calls(ollama) == 1
