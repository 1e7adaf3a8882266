"""A test Ollama server: Ollama's native wire format, scriptable per test.

It answers the way Ollama does (see the project's Ollama API notes): NDJSON with
``application/x-ndjson``, ``done``/``done_reason``, nanosecond durations, counters that are left
out when zero, ``{"error": "..."}`` bodies with Ollama's statuses and messages, tool calls whose
arguments are objects, and it refuses what Ollama refuses (content arrays, string arguments,
``stop`` as a string, ``think`` on a model that cannot think, tools on a model without them).
It remembers which models it loaded and with what ``num_ctx`` (``/api/ps``), and manages models
as Ollama does: pull, push and create report NDJSON progress; copy, delete and blobs answer with
Ollama's statuses.

A test queues :class:`Reply` objects to say how the next requests are answered: what text, how
it is chunked, how slowly, and when it fails. Every request is recorded for assertions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import random
import string
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

NDJSON = "application/x-ndjson"
_NAME = {
    "llama3.2:latest": ["completion", "tools"],
    "qwen3:8b": ["completion", "tools", "thinking"],
    "llava:7b": ["completion", "vision"],
    "nomic-embed-text:latest": ["embedding"],
    "hf.co/bartowski/Qwen2.5-Coder-1.5B-GGUF:Q4_K_M": ["completion", "insert"],
}

# A model that listens; tests that need it add it (``ollama.models.update(AUDIO_MODELS)``), so
# the usual list stays as it is.
AUDIO_MODELS = {"gemma4:e4b": ["completion", "vision", "audio"]}


@dataclass
class Reply:
    """How the fake answers one generation request."""

    content: str = "Hello! How can I help you today?"
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # Ollama's native form
    tool_calls_on_done: bool = False  # llama-server path: all calls in the final chunk
    content_on_done: str = ""  # text carried by the final done:true chunk itself
    done_reason: str = "stop"
    prompt_eval_count: int = 12
    eval_count: int = 7
    logprobs: bool = False
    status: int = 200  # non-200: answer {"error": error} before any byte
    error: str = "boom"
    headers: dict[str, str] = field(default_factory=dict)  # sent with a non-200 answer
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0
    error_after: int | None = None  # write an {"error"} line after this many chunks
    cut_after: int | None = None  # drop the connection after this many chunks
    split_writes: bool = False  # write every line in two halves
    hang: bool = False  # never answer (until the client goes away)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


def _call_id() -> str:
    return "call_" + "".join(random.choices(string.ascii_lowercase + string.digits, k=8))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".123456789Z"


class FakeOllama:
    def __init__(self) -> None:
        self.models = dict(_NAME)
        self.replies: deque[Reply] = deque()
        self.requests: list[Recorded] = []
        self.version = "0.12.11"
        self.embed_dimensions = True  # Ollama ≥ 0.11.11 honours `dimensions` itself
        # Generative models whose runner cannot embed (Ollama's Go engine): 501 from /api/embed.
        self.embed_refused: set[str] = set()
        self.context_length = 131072
        self.disconnects = 0
        self.disconnected = threading.Event()
        self.disconnect_times: list[float] = []
        self.url = ""
        self.streaming: set[Any] = set()  # transports of streams being written now
        self.loaded: dict[str, int] = {}  # models in memory → their num_ctx, for /api/ps
        self.blobs: dict[str, int] = {}  # digest → size, for /api/blobs

    # ---- scripting -----------------------------------------------------------------------
    def reset(self) -> None:
        self.models = dict(_NAME)
        self.embed_dimensions = True
        self.embed_refused = set()
        self.replies.clear()
        self.requests.clear()
        self.disconnects = 0
        self.disconnect_times.clear()
        self.disconnected.clear()
        self.loaded.clear()
        self.blobs.clear()

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def last(self, path: str = "/api/chat") -> Recorded:
        for rec in reversed(self.requests):
            if rec.path == path:
                return rec
        raise AssertionError(f"no request to {path}; got {[r.path for r in self.requests]}")

    # ---- app -----------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/", self.root, allow_head=True)
        app.router.add_get("/api/version", self.version_handler, allow_head=True)
        app.router.add_get("/api/tags", self.tags, allow_head=True)
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_post("/api/embed", self.embed)
        app.router.add_post("/api/show", self.show)
        app.router.add_post("/api/embeddings", self.embeddings)
        app.router.add_get("/api/ps", self.ps)
        app.router.add_post("/api/pull", self.pull)
        app.router.add_post("/api/push", self.push)
        app.router.add_post("/api/create", self.create)
        app.router.add_post("/api/copy", self.copy)
        app.router.add_delete("/api/delete", self.delete)
        app.router.add_post("/api/blobs/{digest}", self.create_blob)
        app.router.add_head("/api/blobs/{digest}", self.head_blob)
        return app

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def version_handler(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self.version})

    async def tags(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded(request.path, dict(request.headers), None))
        models = []
        for i, (name, caps) in enumerate(self.models.items()):
            models.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": f"2025-10-2{i}T17:21:21.196249123Z",
                    "size": 2019393189 + i,
                    "digest": f"{i:064x}",
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": "llama",
                        "families": ["llama"],
                        "parameter_size": "3.2B",
                        "quantization_level": "Q4_K_M",
                    },
                    "capabilities": caps,
                }
            )
        return web.json_response({"models": models})

    # ---- generation ----------------------------------------------------------------------
    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        self.requests.append(Recorded(request.path, dict(request.headers), None))
        if not raw:
            raise _error(400, "missing request body")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _error(400, "invalid character 'x' looking for beginning of value") from None
        self.requests[-1].body = body
        return body

    def _check_model(self, body: dict[str, Any], capability: str) -> list[str]:
        model = body.get("model")
        if not model:
            raise _error(400, "model is required")
        caps = self.models.get(model) or self.models.get(f"{model}:latest")
        if caps is None:
            raise _error(404, f"model '{model}' not found")
        if capability != "any" and capability not in caps:
            raise _error(400, f'"{model}" does not support {capability}')
        return caps

    async def show(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        name = body.get("model") or body.get("name")
        if not name:
            raise _error(400, "model is required")
        caps = self.models.get(name) or self.models.get(f"{name}:latest")
        if caps is None:
            raise _error(404, f"model '{name}' not found")
        return web.json_response(
            {
                "license": "MIT",
                "modelfile": f"FROM {name}",
                "parameters": 'stop                           "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B"},
                "model_info": {
                    "general.architecture": "llama",
                    "general.parameter_count": 3212749888,
                    "llama.context_length": self.context_length,
                    "llama.embedding_length": 3072,
                },
                "tensors": [{"name": "token_embd.weight", "type": "Q6_K", "shape": [3072, 128256]}],
                "capabilities": caps,
                "modified_at": "2025-10-26T17:21:21.196249123Z",
            }
        )

    async def embed(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self._check_model(body, "any")  # Ollama embeds with many generative models too
        self._load(body)
        if body["model"] in self.embed_refused:
            return web.json_response(
                {"error": "this model does not support embeddings"}, status=501
            )
        inputs = body.get("input")
        if inputs in (None, ""):
            return web.json_response({"model": body["model"], "embeddings": []})
        items = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise _error(400, "invalid input type")
        dims = body.get("dimensions")
        vectors = []
        for text in items:
            vector = _vector(text, 768)
            if self.embed_dimensions and isinstance(dims, int) and 0 < dims < len(vector):
                vector = _normalise(vector[:dims])
            vectors.append(vector)
        answer: dict[str, Any] = {
            "model": body["model"],
            "embeddings": vectors,
            "total_duration": 14143917,
            "load_duration": 1019500,
        }
        tokens = sum(len(t.split()) for t in items)
        if tokens:
            answer["prompt_eval_count"] = tokens
        return web.json_response(answer)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        caps = self._check_model(body, "completion")
        if body.get("suffix") and "insert" not in caps:
            raise _error(400, f"registry.ollama.ai/library/{body['model']} does not support insert")
        if body.get("raw") and (body.get("template") or body.get("system")):
            raise _error(400, "raw mode does not support template, system, or context")
        self._load(body)
        stop = (body.get("options") or {}).get("stop")
        if stop is not None and not isinstance(stop, list):
            raise _error(500, 'option "stop" must be of type array')
        if not body.get("prompt"):
            return web.json_response(
                {
                    "model": body["model"],
                    "created_at": _now(),
                    "response": "",
                    "done": True,
                    "done_reason": "load",
                }
            )
        reply = self.replies.popleft() if self.replies else Reply()
        try:
            if reply.first_byte_delay:
                await asyncio.sleep(reply.first_byte_delay)
            if reply.status != 200:
                return _error_reply(reply)
            chunks = [
                _as_generate(c, bool(body.get("raw"))) for c in _chunks(body["model"], reply, False)
            ]
            if not body.get("stream", True):
                return web.json_response(_merge_generate(chunks))
            return await self._stream(request, reply, chunks)
        except (asyncio.CancelledError, ConnectionResetError):
            self._saw_disconnect()
            raise

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        caps = self._check_model(body, "completion")
        _check_chat_body(body, caps)
        self._load(body)
        reply = self.replies.popleft() if self.replies else Reply()
        stream = body.get("stream", True)
        if not body.get("messages"):
            return web.json_response(
                {
                    "model": body["model"],
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": ""},
                    "done_reason": "load",
                    "done": True,
                }
            )
        try:
            if reply.hang:
                await asyncio.sleep(3600)
            if reply.first_byte_delay:
                await asyncio.sleep(reply.first_byte_delay)
            if reply.status != 200:
                return _error_reply(reply)
            chunks = _chunks(body["model"], reply, bool(body.get("tools")))
            if not stream:
                return web.json_response(_merge(chunks))
            return await self._stream(request, reply, chunks)
        except (asyncio.CancelledError, ConnectionResetError):
            self._saw_disconnect()
            raise

    # ---- models in memory and model management ---------------------------------------------
    def _load(self, body: dict[str, Any]) -> None:
        """Ollama loads the model with the request's num_ctx (4096 when none is sent), and
        reloads it when that changes."""
        num_ctx = (body.get("options") or {}).get("num_ctx") or 4096
        self.loaded[_full_name(body["model"])] = min(num_ctx, self.context_length)

    async def ps(self, request: web.Request) -> web.Response:
        models = [
            {
                "name": name,
                "model": name,
                "size": 3338801804,
                "digest": hashlib.sha256(name.encode()).hexdigest(),
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "llama",
                    "families": ["llama"],
                    "parameter_size": "3.2B",
                    "quantization_level": "Q4_K_M",
                },
                "expires_at": "2099-01-01T00:05:00.123456789Z",
                "size_vram": 3338801804,
                "context_length": num_ctx,
            }
            for name, num_ctx in self.loaded.items()
        ]
        return web.json_response({"models": models})

    async def embeddings(self, request: web.Request) -> web.Response:
        """The legacy single-vector endpoint: ``prompt`` in, ``embedding`` out, no metrics."""
        body = await self._body(request)
        if not body.get("model"):
            raise _error(400, "model is required")
        self._check_model(body, "any")
        self._load(body)
        prompt = body.get("prompt") or ""
        return web.json_response({"embedding": _vector(prompt, 768) if prompt else []})

    async def pull(self, request: web.Request) -> web.StreamResponse:
        """Progress as Ollama reports it; a name starting with ``missing`` has no manifest."""
        body = await self._body(request)
        name = body.get("model") or body.get("name")
        if not name:
            raise _error(400, "invalid model name")
        digest = hashlib.sha256(name.encode()).hexdigest()
        total = 2019377376
        progress: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if name.startswith("missing"):
            progress.append({"error": "pull model manifest: file does not exist"})
        else:
            progress += [
                {
                    "status": f"pulling {digest[:12]}",
                    "digest": f"sha256:{digest}",
                    "total": total,
                    **({"completed": done} if done else {}),
                }
                for done in (0, total // 2, total)
            ]
            progress += [
                {"status": "verifying sha256 digest"},
                {"status": "writing manifest"},
                {"status": "success"},
            ]
            self.models[_full_name(name)] = ["completion"]
        return await self._progress(request, body, progress)

    async def push(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        name = body.get("model") or body.get("name")
        if not name:
            raise _error(400, "model is required")
        digest = hashlib.sha256(name.encode()).hexdigest()
        progress = [
            {"status": "retrieving manifest"},
            {"status": f"pushing {digest[:12]}", "digest": f"sha256:{digest}", "total": 1024},
            {"status": "pushing manifest"},
            {"status": "success"},
        ]
        return await self._progress(request, body, progress)

    async def create(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        name = body.get("model") or body.get("name")
        if not name:
            raise _error(400, "invalid model name")
        source = body.get("from")
        caps = self.models.get(source) or self.models.get(f"{source}:latest") or ["completion"]
        digest = hashlib.sha256(str(source or name).encode()).hexdigest()
        progress = [
            {"status": f"using existing layer sha256:{digest}"},
            {"status": "writing manifest"},
            {"status": "success"},
        ]
        self.models[_full_name(name)] = list(caps)
        return await self._progress(request, body, progress)

    async def _progress(
        self, request: web.Request, body: dict[str, Any], progress: list[dict[str, Any]]
    ) -> web.StreamResponse:
        """Ollama's ``streamResponse``/``waitForStream``: NDJSON, an error as a last line; or,
        with ``stream: false``, the last progress object (an error as a 500)."""
        if body.get("stream") is False:
            last = progress[-1]
            return web.json_response(last, status=500 if "error" in last else 200)
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        for item in progress:
            await response.write(orjson.dumps(item) + b"\n")
        await response.write_eof()
        return response

    async def copy(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        source, destination = body.get("source") or "", body.get("destination") or ""
        if not destination:
            raise _error(400, f'destination "{destination}" is invalid')
        caps = self.models.get(source) or self.models.get(f"{source}:latest")
        if caps is None:
            raise _error(404, f'model "{source}" not found')
        self.models[_full_name(destination)] = list(caps)
        return web.Response()

    async def delete(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        name = body.get("model") or body.get("name") or ""
        if self.models.pop(name, None) is None and self.models.pop(f"{name}:latest", None) is None:
            raise _error(404, f"model '{name}' not found")
        return web.Response()

    async def head_blob(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded(request.path, dict(request.headers), None))
        digest = request.match_info["digest"]
        if digest not in self.blobs:
            raise _error(404, f'blob "{digest}" not found')
        return web.Response()

    async def create_blob(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded(request.path, dict(request.headers), None))
        digest = request.match_info["digest"]
        hasher, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_chunked(65536):
            hasher.update(chunk)
            size += len(chunk)
        got = f"sha256:{hasher.hexdigest()}"
        if got != digest:
            raise _error(400, f'digest mismatch, expected "{digest}", got "{got}"')
        self.blobs[digest] = size
        return web.Response(status=201)

    def _saw_disconnect(self) -> None:
        self.disconnect_times.append(time.monotonic())
        self.disconnects += 1
        self.disconnected.set()

    def kill(self) -> int:
        """Drop every stream being written, as a crashing Ollama would; returns how many."""
        count = len(self.streaming)
        for transport in list(self.streaming):
            transport.abort()
        self.streaming.clear()
        return count

    async def _stream(
        self, request: web.Request, reply: Reply, chunks: list[dict[str, Any]]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        self.streaming.add(request.transport)
        try:
            return await self._write_chunks(request, response, reply, chunks)
        finally:
            self.streaming.discard(request.transport)

    async def _write_chunks(
        self,
        request: web.Request,
        response: web.StreamResponse,
        reply: Reply,
        chunks: list[dict[str, Any]],
    ) -> web.StreamResponse:
        for i, chunk in enumerate(chunks):
            if reply.error_after is not None and i == reply.error_after:
                await response.write(orjson.dumps({"error": reply.error}) + b"\n")
                return response
            if reply.cut_after is not None and i == reply.cut_after:
                assert request.transport is not None
                request.transport.abort()
                return response
            if i and reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            line = orjson.dumps(chunk) + b"\n"
            if reply.split_writes:
                half = len(line) // 2
                await response.write(line[:half])
                await asyncio.sleep(0.005)
                await response.write(line[half:])
            else:
                await response.write(line)
        await response.write_eof()
        return response


def _error_reply(reply: Reply) -> web.Response:
    return web.json_response({"error": reply.error}, status=reply.status, headers=reply.headers)


def _full_name(name: str) -> str:
    """``llama3.2`` is ``llama3.2:latest``, as Ollama names it."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _error(status: int, message: str) -> web.HTTPException:
    """Ollama's error body, ``{"error": "..."}``, with its status."""
    cls = {
        400: web.HTTPBadRequest,
        404: web.HTTPNotFound,
        500: web.HTTPInternalServerError,
    }[status]
    return cls(text=orjson.dumps({"error": message}).decode(), content_type="application/json")


def _check_chat_body(body: dict[str, Any], caps: list[str]) -> None:
    """Refuse what Ollama's Go decoder and handler refuse."""
    for message in body.get("messages") or []:
        if not isinstance(message.get("content", ""), str):
            raise _error(
                400,
                "json: cannot unmarshal array into Go struct field Message.messages.content "
                "of type string",
            )
        for call in message.get("tool_calls") or []:
            if not isinstance(call["function"].get("arguments"), dict):
                raise _error(400, "json: cannot unmarshal string into Go value of type map")
        for image in message.get("images") or []:
            if image.startswith("data:"):
                raise _error(400, "illegal base64 data at input byte 4")
            if _is_audio(image) and "audio" not in caps:
                # The runner tells media apart by content; a model without an audio
                # projector cannot take it.
                raise _error(
                    500,
                    "audio input is not supported - hint: if this is unexpected, you may need "
                    "to provide the mmproj",
                )
    stop = (body.get("options") or {}).get("stop")
    if stop is not None and not isinstance(stop, list):
        raise _error(500, 'option "stop" must be of type array')
    if body.get("tools") and "tools" not in caps:
        raise _error(400, f"registry.ollama.ai/library/{body['model']} does not support tools")
    think = body.get("think")
    if think not in (None, False) and "thinking" not in caps:
        raise _error(400, f'"{body["model"]}" does not support thinking')


def _is_audio(image: str) -> bool:
    """WAV or MP3 bytes, recognised by content as Ollama's runner does."""
    try:
        data = base64.b64decode(image[:16], validate=True)
    except ValueError:
        return False
    return (
        (data[:4] == b"RIFF" and data[8:12] == b"WAVE")
        or data[:3] == b"ID3"
        or (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
    )


def _pieces(text: str) -> list[str]:
    """Split like a tokenizer would, keeping every character: 'a b' → ['a', ' b']."""
    out: list[str] = []
    for word in text.split(" "):
        out.append(word if not out else " " + word)
    return [p for p in out if p]


def _chunks(model: str, reply: Reply, tools_requested: bool) -> list[dict[str, Any]]:
    def chunk(**message: Any) -> dict[str, Any]:
        return {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": "", **message},
            "done": False,
        }

    chunks = [chunk(thinking=p) for p in _pieces(reply.thinking)]
    content = _pieces(reply.content)
    for p in content:
        c = chunk(content=p)
        if reply.logprobs:
            c["logprobs"] = [_logprob(p)]
        chunks.append(c)
    calls = [
        {
            "id": call.get("id", _call_id()),
            "function": {"index": i, **call["function"]},
        }
        for i, call in enumerate(reply.tool_calls)
    ]
    if calls and not reply.tool_calls_on_done:
        chunks.extend(chunk(tool_calls=[call]) for call in calls)
    done: dict[str, Any] = {
        "model": model,
        "created_at": _now(),
        "message": {"role": "assistant", "content": reply.content_on_done},
        "done": True,
        "done_reason": reply.done_reason,
        "total_duration": 4883583458,
        "load_duration": 1334875,
        "prompt_eval_duration": 342546000,
        "eval_duration": 4535599000,
    }
    if calls and reply.tool_calls_on_done:
        done["message"]["tool_calls"] = calls
    # Ollama leaves counters out when they are zero (omitempty).
    if reply.prompt_eval_count:
        done["prompt_eval_count"] = reply.prompt_eval_count
    if reply.eval_count:
        done["eval_count"] = reply.eval_count
    chunks.append(done)
    return chunks


def _vector(text: str, size: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    seed = sum(text.encode()) or 1
    raw = [((seed * (i + 7)) % 97 - 48) / 48 for i in range(size)]
    return _normalise(raw)


def _normalise(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


def _as_generate(chunk: dict[str, Any], raw: bool) -> dict[str, Any]:
    """A chat chunk in ``/api/generate``'s shape: ``response`` instead of ``message``."""
    message = chunk.pop("message")
    out = {
        "model": chunk.pop("model"),
        "created_at": chunk.pop("created_at"),
        "response": message.get("content", ""),
    }
    if message.get("thinking"):
        out["thinking"] = message["thinking"]
    out.update(chunk)
    if out["done"] and not raw:
        out["context"] = [128006, 882, 128007]
    return out


def _merge_generate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    final = dict(chunks[-1])
    final["response"] = "".join(c["response"] for c in chunks)
    thinking = "".join(c.get("thinking", "") for c in chunks)
    if thinking:
        final["thinking"] = thinking
    logprobs = [lp for c in chunks for lp in c.get("logprobs", [])]
    if logprobs:
        final["logprobs"] = logprobs
    return final


def _logprob(token: str) -> dict[str, Any]:
    data = list(token.encode())
    return {
        "token": token,
        "logprob": -0.25,
        "bytes": data,
        "top_logprobs": [{"token": token, "logprob": -0.25, "bytes": data}],
    }


def _merge(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What Ollama sends for ``stream: false``: one object with everything concatenated."""
    final = dict(chunks[-1])
    message = {"role": "assistant", "content": ""}
    thinking = ""
    calls: list[dict[str, Any]] = []
    logprobs: list[dict[str, Any]] = []
    for c in chunks:
        message["content"] += c["message"].get("content", "")
        thinking += c["message"].get("thinking", "")
        calls.extend(c["message"].get("tool_calls", []))
        logprobs.extend(c.get("logprobs", []))
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = calls
    final["message"] = message
    if logprobs:
        final["logprobs"] = logprobs
    return final


class LoopThread:
    """An event loop in a thread, so synchronous clients can talk to servers running in it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        with contextlib.suppress(Exception):
            self.loop.close()


async def serve_app(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    return runner, runner.addresses[0][1]


# A 1×1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000200a2f5b6b10000000049454e44ae426082"
)


def image_app() -> web.Application:
    """A small web server with images, redirects and slow answers, for image-URL tests."""

    async def cat(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"\0" * 65536)
        return response

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=PNG, content_type="image/png")

    async def wait(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "0.5")))
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/wait.png", wait)
    app.router.add_get("/cat.png", cat)
    app.router.add_get("/big.png", big)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/slow.png", slow)
    return app
