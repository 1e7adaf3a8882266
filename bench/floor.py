"""The floor: the least a translating pass-through can do, to measure oai2ollama against.

Chat (whole and streamed) and embeddings only, one pooled client session, no validation, no
middleware, no limits, no error handling beyond what aiohttp does by itself. It is not a product:
it answers well-formed requests for the benchmark and nothing else.

Run: python bench/floor.py --port 11600 --ollama-url http://127.0.0.1:11500
"""

from __future__ import annotations

import argparse
import base64
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


def chat_payload(body: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": body["model"],
        "messages": body["messages"],
        "stream": bool(body.get("stream")),
    }
    if body.get("tools"):
        payload["tools"] = body["tools"]
    options = dict(body.get("options") or {})
    if body.get("max_tokens") is not None:
        options["num_predict"] = body["max_tokens"]
    if options:
        payload["options"] = options
    return payload


def tool_calls(message: dict[str, Any]) -> list[dict[str, Any]] | None:
    calls = message.get("tool_calls")
    if not calls:
        return None
    return [
        {
            "index": i,
            "id": call.get("id") or f"call_{i}",
            "type": "function",
            "function": {
                "name": call["function"]["name"],
                "arguments": orjson.dumps(call["function"]["arguments"]).decode(),
            },
        }
        for i, call in enumerate(calls)
    ]


async def chat(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    payload = chat_payload(body)
    session = request.app[SESSION]
    url = request.app[UPSTREAM] + "/api/chat"
    cid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body["model"]
    async with session.post(url, data=orjson.dumps(payload)) as upstream:
        if not payload["stream"]:
            answer = orjson.loads(await upstream.read())
            message = answer["message"]
            out: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
            calls = tool_calls(message)
            if calls:
                out["tool_calls"] = calls
            prompt, completion = answer.get("prompt_eval_count", 0), answer.get("eval_count", 0)
            return web.Response(
                body=orjson.dumps(
                    {
                        "id": cid,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": out,
                                "finish_reason": "tool_calls" if calls else "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt,
                            "completion_tokens": completion,
                            "total_tokens": prompt + completion,
                        },
                    }
                ),
                content_type="application/json",
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for data in lines(upstream):
            await response.write(data)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def lines(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Ollama's NDJSON lines as SSE chunks, the events of one read in one write."""
    head = b'{"id":"chatcmpl-floor","object":"chat.completion.chunk","created":0,"model":"m",'
    rest = b""
    async for data in upstream.content.iter_any():
        parts = (rest + data).split(b"\n")
        rest = parts.pop()
        out = b""
        for line in parts:
            if not line:
                continue
            chunk = orjson.loads(line)
            message = chunk.get("message") or {}
            delta: dict[str, Any] = {"content": message.get("content") or ""}
            calls = tool_calls(message)
            if calls:
                delta["tool_calls"] = calls
            finish = (chunk.get("done_reason") or "stop") if chunk.get("done") else None
            out += (
                b"data: "
                + head
                + b'"choices":'
                + orjson.dumps([{"index": 0, "delta": delta, "finish_reason": finish}])
                + b"}\n\n"
            )
        if out:
            yield out


async def embeddings(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    session = request.app[SESSION]
    url = request.app[UPSTREAM] + "/api/embed"
    payload = {"model": body["model"], "input": body["input"]}
    async with session.post(url, data=orjson.dumps(payload)) as upstream:
        answer = orjson.loads(await upstream.read())
    b64 = body.get("encoding_format") == "base64"
    data = []
    for i, vector in enumerate(answer["embeddings"]):
        if b64:
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    tokens = answer.get("prompt_eval_count", 0)
    out = {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def session_lifetime(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    )
    yield
    await app[SESSION].close()


def make_app(ollama_url: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = ollama_url.rstrip("/")
    app.cleanup_ctx.append(session_lifetime)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=11600)
    parser.add_argument("--ollama-url", default="http://127.0.0.1:11500")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args()
    loop_factory = None
    if args.loop != "asyncio":
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            if args.loop == "uvloop":
                raise
    web.run_app(
        make_app(args.ollama_url),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        loop=loop_factory() if loop_factory else None,
    )


if __name__ == "__main__":
    main()
