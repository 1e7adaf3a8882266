"""Load test: hundreds of concurrent streams through the shim for a bounded time.

Starts the fast fake Ollama (with a delay between chunks, like a real model) and the shim as
separate processes on 127.0.0.1, keeps ``--streams`` streams open at once for ``--seconds``, and
prints what happened: streams completed, errors, time to first byte and whole-stream latency
(p50/p99), the shim's peak RSS, and its open file descriptors before and after.

    python bench/load.py                          # 256 streams for 20 s
    python bench/load.py --streams 512 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import aiohttp
import orjson

from bench import (  # type: ignore[import-not-found]
    free_port,
    percentile,
    rss_kib,
    start_fake,
    start_shim,
    wait_ready,
)

HERE = Path(__file__).resolve().parent


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def run(args: argparse.Namespace) -> None:
    fake_port, shim_port = free_port(), free_port()
    fake_url, shim_url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{shim_port}"
    fake = await start_fake(
        fake_port, "--tokens", str(args.tokens), "--chunk-delay", str(args.chunk_delay)
    )
    shim = await start_shim(shim_port, fake_url)
    try:
        await wait_ready(f"{fake_url}/api/version")
        await wait_ready(f"{shim_url}/healthz")
        fds_before = fds(shim.pid)
        rss_before = rss_kib(shim.pid) / 1024
        body = orjson.dumps(
            {
                "model": "bench",
                "messages": [{"role": "user", "content": "Tell me a story."}],
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        ttfb: list[float] = []
        totals: list[float] = []
        errors = 0
        completed = 0
        deadline = time.perf_counter() + args.seconds
        connector = aiohttp.TCPConnector(limit=args.streams)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                nonlocal errors, completed
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    try:
                        async with session.post(
                            f"{shim_url}/v1/chat/completions",
                            data=body,
                            headers={"Content-Type": "application/json"},
                        ) as resp:
                            first = True
                            last = b""
                            async for line in resp.content:
                                if first:
                                    ttfb.append(time.perf_counter() - started)
                                    first = False
                                if line.strip():
                                    last = line
                            if resp.status != 200 or last.strip() != b"data: [DONE]":
                                errors += 1
                                continue
                    except aiohttp.ClientError:
                        errors += 1
                        continue
                    totals.append(time.perf_counter() - started)
                    completed += 1

            peak = 0.0

            async def sample() -> None:
                nonlocal peak
                while time.perf_counter() < deadline:
                    peak = max(peak, rss_kib(shim.pid) / 1024)
                    await asyncio.sleep(0.2)

            await asyncio.gather(sample(), *(worker() for _ in range(args.streams)))
        await asyncio.sleep(1.0)  # let closed client connections settle
        fds_after = fds(shim.pid)
        if args.settle:
            await asyncio.sleep(args.settle)  # the pool's idle upstream connections expire
        fds_settled = fds(shim.pid)
        print(
            f"oai2ollama load — {args.streams} concurrent streams for {args.seconds:g} s, "
            f"{args.tokens + 1} chunks each, {args.chunk_delay * 1000:g} ms between chunks"
        )
        print(f"streams completed {completed}, errors {errors}")
        if totals:
            print(
                f"time to first byte p50 {percentile(ttfb, 0.5) * 1000:.1f} ms, "
                f"p99 {percentile(ttfb, 0.99) * 1000:.1f} ms; whole stream "
                f"p50 {percentile(totals, 0.5) * 1000:.1f} ms, "
                f"p99 {percentile(totals, 0.99) * 1000:.1f} ms"
            )
        print(
            f"shim RSS idle {rss_before:.1f} MiB, peak {peak:.1f} MiB; open fds before "
            f"{fds_before}, after {fds_after} (idle pooled connections to Ollama included)"
            + (f", {fds_settled} after {args.settle:g} s more" if args.settle else "")
        )
    finally:
        for proc in (shim, fake):
            proc.terminate()
            await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Many concurrent streams through the shim.")
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--chunk-delay", type=float, default=0.02)
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds to wait at the end for idle pooled connections to close (they live 60 s)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
