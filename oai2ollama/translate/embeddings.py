"""Embeddings: OpenAI ``/v1/embeddings`` ⇄ Ollama ``/api/embed``."""

from __future__ import annotations

import base64
import functools
import math
import struct
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest, UpstreamError
from . import validate
from .options import add_ollama_fields
from .validate import invalid_type

TOKEN_IDS_FIX = (
    "Token-id input is not supported: Ollama embeds text with the model's own tokenizer. Send "
    "the text itself (with LangChain's OpenAIEmbeddings, set check_embedding_ctx_length=False)."
)


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    payload: dict[str, Any]
    base64: bool
    dimensions: int | None
    count: int

    @property
    def text_chars(self) -> int:
        """Characters in the longest input: each input must fit the context on its own."""
        inputs = self.payload["input"]
        return len(inputs) if isinstance(inputs, str) else max(map(len, inputs))


def parse_request(body: Any) -> EmbeddingRequest:
    body = validate.require_object(body)
    model = validate.require_str(body, "model")
    inputs = _inputs(body.get("input"))
    encoding = body.get("encoding_format")
    if encoding is None:
        encoding = "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequest(
            f"Invalid value for 'encoding_format': {encoding!r}. Supported values: 'float' "
            "and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    dimensions = validate.optional_int(body, "dimensions", 1)
    payload: dict[str, Any] = {"model": model, "input": inputs}
    if dimensions is not None:
        payload["dimensions"] = dimensions
    truncate = validate.optional_bool(body, "truncate")
    if truncate is not None:
        payload["truncate"] = truncate
    add_ollama_fields(payload, body, generation=False)
    return EmbeddingRequest(
        model=model,
        payload=payload,
        base64=encoding == "base64",
        dimensions=dimensions,
        count=1 if isinstance(inputs, str) else len(inputs),
    )


def _inputs(value: Any) -> str | list[str]:
    if value is None:
        raise InvalidRequest(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("'input' must not be empty.", param="input", code="invalid_value")
        return value
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array of strings", value)
    if not value:
        raise InvalidRequest("'input' must not be empty.", param="input", code="invalid_value")
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise InvalidRequest(
                    f"'input[{i}]' must not be empty.", param="input", code="invalid_value"
                )
        elif validate.is_number(item) or isinstance(item, list):
            raise InvalidRequest(TOKEN_IDS_FIX, param="input", code="unsupported_value")
        else:
            raise invalid_type(f"input[{i}]", "a string", item)
    return value


def shorten(vector: list[float], dimensions: int) -> list[float]:
    """Cut to ``dimensions`` and scale back to unit length, as Ollama ≥ 0.11.11 does itself."""
    cut = vector[:dimensions]
    norm = math.sqrt(math.fsum(x * x for x in cut))
    return [x / norm for x in cut] if norm else cut


@functools.lru_cache(maxsize=16)
def _packer(length: int) -> struct.Struct:
    return struct.Struct(f"<{length}f")


def encode_base64(vector: list[float]) -> str:
    """Little-endian float32, base64: what the OpenAI SDKs decode."""
    return base64.b64encode(_packer(len(vector)).pack(*vector)).decode()


def response(answer: Any, request: EmbeddingRequest) -> dict[str, Any]:
    vectors = answer.get("embeddings") if isinstance(answer, dict) else None
    if not isinstance(vectors, list) or len(vectors) != request.count:
        got = len(vectors) if isinstance(vectors, list) else "no"
        raise UpstreamError(f"Ollama returned {got} embeddings for {request.count} input(s).")
    data = []
    for i, vector in enumerate(vectors):
        if request.dimensions is not None and len(vector) > request.dimensions:
            vector = shorten(vector, request.dimensions)
        data.append(
            {
                "object": "embedding",
                "index": i,
                "embedding": encode_base64(vector) if request.base64 else vector,
            }
        )
    tokens = answer.get("prompt_eval_count") or 0
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
