"""Legacy completions and fill-in-the-middle: OpenAI ``/v1/completions`` ⇄ Ollama ``/api/generate``.

Editors ask for tab autocomplete here: ``prompt`` is the text before the cursor and ``suffix``
the text after it, which Ollama's ``suffix`` turns into the model's own FIM prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import InvalidRequest, from_ollama
from . import validate
from .options import add_ollama_fields
from .stream import ChoiceStream, usage
from .validate import invalid_type

MAX_CHOICES = 8
MAX_TOTAL_CHOICES = 32
TOKEN_IDS_FIX = (
    "Token-id prompts are not supported: Ollama tokenizes text with the model's own tokenizer. "
    "Send the prompt as text."
)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str
    stream: bool
    include_usage: bool
    payload: dict[str, Any]  # without `prompt`: see payload_for
    prompts: tuple[str, ...]
    n: int = 1
    echo: bool = False
    logprobs: int | None = None

    @property
    def choices(self) -> int:
        return len(self.prompts) * self.n

    @property
    def text_chars(self) -> int:
        return max(map(len, self.prompts)) + len(self.payload.get("suffix", ""))

    def payload_for(self, index: int) -> dict[str, Any]:
        """Choice ``index`` answers prompt ``index // n``, with ``seed + index % n`` if seeded."""
        payload = {**self.payload, "prompt": self.prompts[index // self.n]}
        seed = payload.get("options", {}).get("seed")
        if seed is not None and index % self.n:
            payload["options"] = {**payload["options"], "seed": seed + index % self.n}
        return payload


def parse_request(body: Any) -> CompletionRequest:
    body = validate.require_object(body)
    model = validate.require_str(body, "model")
    prompts = _prompts(body.get("prompt"))
    stream = bool(validate.optional_bool(body, "stream"))
    include_usage = validate.include_usage(body)
    n = validate.optional_int(body, "n", 1) or 1
    if n > MAX_CHOICES or n * len(prompts) > MAX_TOTAL_CHOICES:
        raise InvalidRequest(
            f"Too many choices: at most {MAX_CHOICES} per prompt and {MAX_TOTAL_CHOICES} in all "
            "(each one is a separate generation).",
            param="n",
            code="invalid_value",
        )
    best_of = validate.optional_int(body, "best_of", 1)
    if best_of is not None and best_of > n:
        raise InvalidRequest(
            "'best_of' greater than 'n' is not supported: Ollama cannot rank candidates.",
            param="best_of",
            code="unsupported_value",
        )
    payload: dict[str, Any] = {"model": model, "stream": stream}
    suffix = body.get("suffix")
    if suffix is not None:
        if not isinstance(suffix, str):
            raise invalid_type("suffix", "a string", suffix)
        if suffix:
            payload["suffix"] = suffix
    for key in ("system", "template"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise invalid_type(key, "a string", value)
            payload[key] = value
    raw = validate.optional_bool(body, "raw")
    if raw is not None:
        payload["raw"] = raw
    add_ollama_fields(payload, body)
    logprobs = validate.optional_int(body, "logprobs", 0, hi=5)
    if logprobs is not None:
        payload["logprobs"] = True
        payload["top_logprobs"] = logprobs
    return CompletionRequest(
        model=model,
        stream=stream,
        include_usage=include_usage,
        payload=payload,
        prompts=tuple(prompts),
        n=n,
        echo=bool(validate.optional_bool(body, "echo")),
        logprobs=logprobs,
    )


def _prompts(value: Any) -> list[str]:
    if value is None:
        raise InvalidRequest(
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise invalid_type("prompt", "a string or an array of strings", value)
    if not value:
        raise InvalidRequest("'prompt' must not be empty.", param="prompt", code="invalid_value")
    for i, item in enumerate(value):
        if validate.is_number(item) or isinstance(item, list):
            raise InvalidRequest(TOKEN_IDS_FIX, param="prompt", code="unsupported_value")
        if not isinstance(item, str):
            raise invalid_type(f"prompt[{i}]", "a string", item)
    return value


def finish_reason(done_reason: Any) -> str:
    return "length" if done_reason == "length" else "stop"


def legacy_logprobs(entries: list[dict[str, Any]], offset: int) -> dict[str, Any]:
    """Ollama's per-token logprobs → the legacy ``{tokens, token_logprobs, top_logprobs,
    text_offset}`` shape; ``offset`` is where the first token starts in the returned text."""
    tokens, values, tops, offsets = [], [], [], []
    for entry in entries:
        token = entry.get("token", "")
        tokens.append(token)
        values.append(entry.get("logprob"))
        tops.append({t.get("token", ""): t.get("logprob") for t in entry.get("top_logprobs") or []})
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": values,
        "top_logprobs": tops,
        "text_offset": offsets,
    }


def completion(
    answers: list[dict[str, Any]], request: CompletionRequest, *, completion_id: str, created: int
) -> dict[str, Any]:
    choices = []
    prompt_tokens = 0
    for i, answer in enumerate(answers):
        if "error" in answer:
            raise from_ollama(500, str(answer["error"]))
        prompt = request.prompts[i // request.n]
        head = prompt if request.echo else ""
        text = head + (answer.get("response") or "")
        logprobs = answer.get("logprobs")
        choices.append(
            {
                "text": text,
                "index": i,
                "logprobs": legacy_logprobs(logprobs, len(head))
                if request.logprobs is not None and logprobs
                else None,
                "finish_reason": finish_reason(answer.get("done_reason")),
            }
        )
        if i % request.n == 0:
            prompt_tokens += answer.get("prompt_eval_count") or 0
    generated = sum(a.get("eval_count") or 0 for a in answers)
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": request.model,
        "choices": choices,
        "usage": usage(prompt_tokens, generated),
    }


class CompletionStream(ChoiceStream):
    """Turns Ollama's NDJSON generate chunks into ``text_completion`` SSE events."""

    __slots__ = ("_echo", "_logprobs", "_offset")
    _empty = b'""'

    def __init__(
        self, completion_id: str, created: int, request: CompletionRequest, index: int = 0
    ) -> None:
        super().__init__(
            completion_id=completion_id,
            obj="text_completion",
            created=created,
            model=request.model,
            index=index,
            key="text",
            include_usage=request.include_usage,
            solo=request.choices == 1,
        )
        self._echo = request.prompts[index // request.n] if request.echo else ""
        self._offset = len(self._echo)
        self._logprobs = request.logprobs is not None

    def start(self) -> bytes:
        """Nothing to say before the first token, unless the prompt is echoed."""
        return self._event(orjson.dumps(self._echo)) if self._echo else b""

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if "error" in chunk:
            raise from_ollama(500, str(chunk["error"]))
        out = b""
        text = chunk.get("response") or ""
        entries = chunk.get("logprobs") if self._logprobs else None
        if text or entries:
            lp = orjson.dumps(legacy_logprobs(entries, self._offset)) if entries else None
            self._offset += len(text)
            out = self._event(orjson.dumps(text), logprobs=lp)
        if chunk.get("done"):
            out += self._finished(chunk, finish_reason(chunk.get("done_reason")))
        return out
