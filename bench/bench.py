"""Benchmark: what the shim adds on top of calling Ollama directly.

Starts a fast fake Ollama and the shim as separate processes, then drives both with the same
bounded load, interleaved round by round, and prints added latency (p50/p99), requests per
second, streaming cost and the shim's memory. Nothing leaves 127.0.0.1.

    python bench/bench.py                 # the default run (about a minute)
    python bench/bench.py --quick         # a smoke run
    python bench/bench.py --json out.json # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

HERE = Path(__file__).resolve().parent
MESSAGES = [{"role": "user", "content": "Say something short."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Target:
    name: str
    url: str
    body: bytes
    latencies: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    errors: int = 0


async def one(session: aiohttp.ClientSession, target: Target, stream: bool) -> None:
    started = time.perf_counter()
    async with session.post(target.url, data=target.body) as resp:
        if stream:
            first = True
            async for _ in resp.content.iter_any():
                if first:
                    target.ttfb.append(time.perf_counter() - started)
                    first = False
        else:
            await resp.read()
        if resp.status != 200:
            target.errors += 1
    target.latencies.append(time.perf_counter() - started)


async def round_of(
    session: aiohttp.ClientSession, target: Target, count: int, concurrency: int, stream: bool
) -> None:
    queue = iter(range(count))

    async def worker() -> None:
        for _ in queue:
            await one(session, target, stream)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    target.rps.append(count / (time.perf_counter() - started))


async def scenario(
    direct: Target, shim: Target, count: int, concurrency: int, rounds: int, stream: bool
) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(
        connector=connector, headers={"Content-Type": "application/json"}
    ) as session:
        for target in (direct, shim):  # warm up connections and code paths
            await round_of(session, target, min(count, 50), concurrency, stream)
            target.latencies.clear()
            target.ttfb.clear()
            target.rps.clear()
        for _ in range(rounds):
            for target in (direct, shim):
                await round_of(session, target, count, concurrency, stream)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


async def wait_ready(url: str, limit: float = 10) -> float:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < limit:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.01)
    raise SystemExit(f"{url} did not come up")


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def pair(fake: str, shim: str, stream: bool, tools: bool = False) -> tuple[Target, Target]:
    native: dict[str, Any] = {"model": "bench", "messages": MESSAGES, "stream": stream}
    openai: dict[str, Any] = {"model": "bench", "messages": MESSAGES, "stream": stream}
    if tools:
        native["tools"] = openai["tools"] = TOOLS
    return (
        Target("direct", f"{fake}/api/chat", orjson.dumps(native)),
        Target("shim", f"{shim}/v1/chat/completions", orjson.dumps(openai)),
    )


async def start_fake(port: int, *args: str) -> asyncio.subprocess.Process:
    """The fast fake Ollama, as its own process."""
    script = str(HERE / "fast_ollama.py")
    return await asyncio.create_subprocess_exec(
        sys.executable, script, "--port", str(port), *args, stdout=subprocess.DEVNULL
    )


async def start_shim(port: int, ollama_url: str) -> asyncio.subprocess.Process:
    """The shim, as its own process, as a user would start it (but quiet)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "oai2ollama",
        "--port",
        str(port),
        "--ollama-url",
        ollama_url,
        "--log-level",
        "warning",
        stdout=subprocess.DEVNULL,
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    fake_port, shim_port = free_port(), free_port()
    fake_url, shim_url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{shim_port}"
    fake = await start_fake(fake_port, "--tokens", str(args.tokens))
    results: dict[str, Any] = {"tokens": args.tokens, "cpus": os.cpu_count()}
    try:
        await wait_ready(f"{fake_url}/api/version")
        launched = time.perf_counter()
        shim = await start_shim(shim_port, fake_url)
        await wait_ready(f"{shim_url}/healthz")
        results["start_to_ready_s"] = time.perf_counter() - launched
        try:
            results["rss_idle_mib"] = rss_kib(shim.pid) / 1024
            for concurrency, count in ((1, args.requests), (64, args.requests * 4)):
                direct, via = pair(fake_url, shim_url, stream=False)
                await scenario(direct, via, count, concurrency, args.rounds, stream=False)
                results[f"chat_c{concurrency}"] = summarise(direct, via)
            for key, tools in (("chat_stream_c1", False), ("chat_stream_tools_c1", True)):
                direct, via = pair(fake_url, shim_url, stream=True, tools=tools)
                await scenario(direct, via, args.requests // 2, 1, args.rounds, stream=True)
                summary = summarise(direct, via)
                summary["ttfb_added_ms"] = (
                    statistics.median(via.ttfb) - statistics.median(direct.ttfb)
                ) * 1000
                summary["per_chunk_added_us"] = summary["added_p50_ms"] * 1000 / (args.tokens + 1)
                results[key] = summary
            texts = [f"sentence number {i} to embed" for i in range(16)]
            direct = Target(
                "direct",
                f"{fake_url}/api/embed",
                orjson.dumps({"model": "bench", "input": texts}),
            )
            via = Target(
                "shim",
                f"{shim_url}/v1/embeddings",
                orjson.dumps({"model": "bench", "input": texts, "encoding_format": "base64"}),
            )
            await scenario(direct, via, args.requests // 2, 1, args.rounds, stream=False)
            results["embed16_c1"] = summarise(direct, via)
            results["rss_peak_mib"] = rss_kib(shim.pid, "VmHWM") / 1024
        finally:
            shim.terminate()
            await shim.wait()
    finally:
        fake.terminate()
        await fake.wait()
    return results


def summarise(direct: Target, shim: Target) -> dict[str, Any]:
    d50, s50 = statistics.median(direct.latencies), statistics.median(shim.latencies)
    d99, s99 = percentile(direct.latencies, 0.99), percentile(shim.latencies, 0.99)
    return {
        "requests": len(shim.latencies),
        "errors": direct.errors + shim.errors,
        "direct_p50_ms": d50 * 1000,
        "shim_p50_ms": s50 * 1000,
        "added_p50_ms": (s50 - d50) * 1000,
        "direct_p99_ms": d99 * 1000,
        "shim_p99_ms": s99 * 1000,
        "added_p99_ms": (s99 - d99) * 1000,
        "direct_rps": statistics.median(direct.rps),
        "shim_rps": statistics.median(shim.rps),
        "throughput_ratio": statistics.median(shim.rps) / statistics.median(direct.rps),
    }


SCENARIOS = ("chat_c1", "chat_c64", "chat_stream_c1", "chat_stream_tools_c1", "embed16_c1")


def report(results: dict[str, Any]) -> str:
    lines = [
        f"oai2ollama bench — {results['cpus']} CPUs, {results['tokens']} tokens per answer",
        "",
        f"{'scenario':<22}{'direct p50':>11}{'shim p50':>10}{'added p50':>11}{'added p99':>11}"
        f"{'direct rps':>12}{'shim rps':>10}{'ratio':>7}",
    ]
    for key in SCENARIOS:
        r = results[key]
        lines.append(
            f"{key:<22}{r['direct_p50_ms']:>9.3f}ms{r['shim_p50_ms']:>8.3f}ms"
            f"{r['added_p50_ms']:>9.3f}ms{r['added_p99_ms']:>9.3f}ms"
            f"{r['direct_rps']:>12.0f}{r['shim_rps']:>10.0f}{r['throughput_ratio']:>7.2f}"
        )
    stream = results["chat_stream_c1"]
    errors = sum(results[k]["errors"] for k in SCENARIOS)
    tools = results["chat_stream_tools_c1"]
    lines += [
        "",
        f"streaming: added time to first byte {stream['ttfb_added_ms']:.3f} ms, "
        f"added per chunk {stream['per_chunk_added_us']:.1f} µs "
        f"(with tool calls: {tools['per_chunk_added_us']:.1f} µs)",
        f"shim RSS: idle {results['rss_idle_mib']:.1f} MiB, peak {results['rss_peak_mib']:.1f} MiB;"
        f" start to ready {results['start_to_ready_s']:.3f} s; errors {errors}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure what oai2ollama adds.")
    parser.add_argument("--requests", type=int, default=400, help="requests per round at c=1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64, help="chunks per streamed answer")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 60, 1
    results = asyncio.run(run(args))
    print(report(results))
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
