"""A fast fake Ollama for benchmarks: fixed answers and as little work per request as possible.

Run: python bench/fast_ollama.py --port 11500 --tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiohttp import web

CREATED = "2025-10-26T17:21:21.196249123Z"


def build(tokens: int, model: str = "bench") -> tuple[bytes, list[bytes]]:
    whole = {
        "model": model,
        "created_at": CREATED,
        "message": {"role": "assistant", "content": "tok " * tokens},
        "done": True,
        "done_reason": "stop",
        "total_duration": 1000,
        "load_duration": 10,
        "prompt_eval_count": 12,
        "prompt_eval_duration": 100,
        "eval_count": tokens,
        "eval_duration": 900,
    }
    lines = [
        orjson.dumps(
            {
                "model": model,
                "created_at": CREATED,
                "message": {"role": "assistant", "content": "tok "},
                "done": False,
            }
        )
        + b"\n"
        for _ in range(tokens)
    ]
    last = dict(whole, message={"role": "assistant", "content": ""})
    lines.append(orjson.dumps(last) + b"\n")
    return orjson.dumps(whole), lines


def with_tool_calls(lines: list[bytes], model: str = "bench") -> list[bytes]:
    """The same stream, where every eighth chunk is a whole tool call instead of text."""
    call = {
        "model": model,
        "created_at": CREATED,
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_ab12cd34",
                    "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
        "done": False,
    }
    encoded = orjson.dumps(call) + b"\n"
    return [encoded if i % 8 == 7 else line for i, line in enumerate(lines[:-1])] + lines[-1:]


def make_app(tokens: int, chunk_delay: float, dims: int) -> web.Application:
    """``tokens`` and ``chunk_delay`` are defaults; a request may ask for others with
    ``options.num_predict`` and ``options.bench_delay`` (the shim passes unknown options on)."""
    answers: dict[int, tuple[bytes, list[bytes], list[bytes]]] = {}

    def answer(count: int) -> tuple[bytes, list[bytes], list[bytes]]:
        if count not in answers:
            whole, lines = build(count)
            answers[count] = (whole, lines, with_tool_calls(lines))
        return answers[count]

    tags = orjson.dumps(
        {"models": [{"name": "bench:latest", "model": "bench:latest", "modified_at": CREATED}]}
    )
    embedding = [0.0] * dims
    embedding[0] = 1.0

    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        options = body.get("options") or {}
        whole, lines, tool_lines = answer(options.get("num_predict", tokens))
        delay = options.get("bench_delay", chunk_delay)
        if not body.get("stream", True):
            return web.Response(body=whole, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for line in tool_lines if body.get("tools") else lines:
            if delay:
                await asyncio.sleep(delay)
            await response.write(line)
        await response.write_eof()
        return response

    async def embed(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        answer = {
            "model": body["model"],
            "embeddings": [embedding] * len(inputs),
            "prompt_eval_count": 8 * len(inputs),
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def tags_handler(request: web.Request) -> web.Response:
        return web.Response(body=tags, content_type="application/json")

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.12.11"})

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/embed", embed)
    app.router.add_get("/api/tags", tags_handler)
    app.router.add_get("/api/version", version)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=11500)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--dims", type=int, default=768)
    args = parser.parse_args()
    app = make_app(args.tokens, args.chunk_delay, args.dims)
    print(f"fast fake Ollama on 127.0.0.1:{args.port} at {time.time():.0f}", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
