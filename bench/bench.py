"""Benchmark: what the shim adds on top of calling Ollama directly.

Starts a fast fake Ollama and the shim as separate processes, then drives both with the same
bounded load, interleaved round by round (direct, shim, direct, shim …), and prints a table of
added latency (p50/p99), throughput, streaming cost, and the shim's memory. Nothing leaves
127.0.0.1.

    python bench/bench.py                       # the default run (a few minutes)
    python bench/bench.py --quick               # a smoke run
    python bench/bench.py --json out.json       # also write the figures as JSON
    python bench/bench.py --plot docs/benchmarks.png   # also plot (needs matplotlib)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
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
SWEEP = (1, 4, 16, 64)


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
    body: bytes | None  # None: GET
    latencies: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    errors: int = 0


async def one(session: aiohttp.ClientSession, target: Target) -> None:
    started = time.perf_counter()
    method = "GET" if target.body is None else "POST"
    async with session.request(method, target.url, data=target.body) as resp:
        first = True
        async for _ in resp.content.iter_any():
            if first:
                target.ttfb.append(time.perf_counter() - started)
                first = False
        if resp.status != 200:
            target.errors += 1
    target.latencies.append(time.perf_counter() - started)


async def round_of(
    session: aiohttp.ClientSession, target: Target, count: int, concurrency: int
) -> None:
    queue = iter(range(count))

    async def worker() -> None:
        for _ in queue:
            await one(session, target)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    target.rps.append(count / (time.perf_counter() - started))


async def compare(direct: Target, shim: Target, count: int, concurrency: int, rounds: int) -> dict:
    """Interleaved rounds of the same load against both; medians of the rounds."""
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        for target in (direct, shim):  # warm up connections and code paths
            await round_of(session, target, min(count, 50), concurrency)
            target.latencies.clear()
            target.ttfb.clear()
            target.rps.clear()
        for _ in range(rounds):
            for target in (direct, shim):
                await round_of(session, target, count, concurrency)
    return summarise(direct, shim)


def summarise(direct: Target, shim: Target) -> dict[str, Any]:
    d50, s50 = statistics.median(direct.latencies), statistics.median(shim.latencies)
    d99, s99 = percentile(direct.latencies, 0.99), percentile(shim.latencies, 0.99)
    out = {
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
    if direct.ttfb and shim.ttfb:
        out["ttfb_added_ms"] = (
            statistics.median(shim.ttfb) - statistics.median(direct.ttfb)
        ) * 1000
    return out


def chat_pair(fake: str, shim: str, *, stream: bool, chunks: int, tools: bool = False) -> tuple:
    native: dict[str, Any] = {
        "model": "bench",
        "messages": MESSAGES,
        "stream": stream,
        "options": {"num_predict": chunks},
    }
    openai: dict[str, Any] = {
        "model": "bench",
        "messages": MESSAGES,
        "stream": stream,
        "max_tokens": chunks,
    }
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


async def start_shim(port: int, ollama_url: str, loop: str = "auto") -> asyncio.subprocess.Process:
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
        "--loop",
        loop,
        stdout=subprocess.DEVNULL,
    )


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
            await asyncio.sleep(0.005)
    raise SystemExit(f"{url} did not come up")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_per_chunk(
    fake_url: str, shim_url: str, fake_pid: int, shim_pid: int, streams: int
) -> tuple[float, float]:
    """CPU per streamed chunk (µs) when chunks arrive one at a time, as from a real model: the
    shim's (reading, translating, writing each one), and for scale, the fake Ollama's own for
    the same stream sent directly (one write per chunk)."""
    native = {
        "model": "bench",
        "messages": MESSAGES,
        "stream": True,
        "options": {"num_predict": 1024, "bench_delay": 0.0003},
    }
    openai = {**native, "max_tokens": 1024}
    chunks = streams * 1025
    used = []
    async with aiohttp.ClientSession() as session:
        for pid, url in ((shim_pid, f"{shim_url}/v1/chat/completions"), (fake_pid, None)):
            target = url or f"{fake_url}/api/chat"
            body = orjson.dumps(openai if url else native)
            before = cpu_seconds(pid)
            for _ in range(streams):
                async with session.post(target, data=body) as resp:
                    await resp.read()
            used.append((cpu_seconds(pid) - before) / chunks * 1e6)
    return used[0], used[1]


async def open_streams(shim_url: str, pid: int, count: int) -> float:
    """Peak RSS (MiB) while ``count`` slow streams are open at once."""
    body = orjson.dumps(
        {
            "model": "bench",
            "messages": MESSAGES,
            "stream": True,
            "max_tokens": 64,
            "options": {"bench_delay": 0.02},
        }
    )
    peak = 0.0
    connector = aiohttp.TCPConnector(limit=count)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def stream() -> None:
            async with session.post(f"{shim_url}/v1/chat/completions", data=body) as resp:
                async for _ in resp.content.iter_any():
                    pass

        tasks = [asyncio.ensure_future(stream()) for _ in range(count)]
        while not all(t.done() for t in tasks):
            peak = max(peak, rss_kib(pid) / 1024)
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)
    return peak


async def litellm_side(args: argparse.Namespace, fake_url: str) -> dict[str, Any]:
    """The same chat scenarios through a LiteLLM proxy, for comparison (not part of CI)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"}
    launched = time.perf_counter()
    proxy = await asyncio.create_subprocess_exec(
        args.litellm,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        "ollama_chat/bench",
        "--api_base",
        fake_url,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    out: dict[str, Any] = {}
    try:
        await wait_ready(f"{url}/health/liveliness", limit=120)
        out["start_to_ready_s"] = time.perf_counter() - launched
        out["rss_idle_mib"] = rss_kib(proxy.pid) / 1024
        n, rounds = args.requests, args.rounds
        for label, stream, c in (
            ("chat c=1", False, 1),
            ("chat c=64", False, 64),
            ("stream 64 chunks c=1", True, 1),
        ):
            direct, _ = chat_pair(fake_url, url, stream=stream, chunks=64)
            body = {
                "model": "ollama_chat/bench",
                "messages": MESSAGES,
                "stream": stream,
                "max_tokens": 64,
            }
            via = Target("litellm", f"{url}/v1/chat/completions", orjson.dumps(body))
            out[label] = await compare(direct, via, n * (4 if c > 1 else 1) // 2, c, rounds)
        out["rss_peak_mib"] = rss_kib(proxy.pid, "VmHWM") / 1024
    finally:
        proxy.terminate()
        await proxy.wait()
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    fake_port, shim_port = free_port(), free_port()
    fake_url, shim_url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{shim_port}"
    fake = await start_fake(fake_port, "--tokens", "64")
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "loop": args.loop,
        "requests_per_round": args.requests,
        "rounds": args.rounds,
    }
    n, rounds = args.requests, args.rounds
    try:
        await wait_ready(f"{fake_url}/api/version")
        launched = time.perf_counter()
        shim = await start_shim(shim_port, fake_url, args.loop)
        await wait_ready(f"{shim_url}/healthz")
        results["start_to_ready_s"] = time.perf_counter() - launched
        try:
            results["rss_idle_mib"] = rss_kib(shim.pid) / 1024
            scenarios = results["scenarios"] = {}
            for c, count in ((1, n), (64, n * 4)):
                pair = chat_pair(fake_url, shim_url, stream=False, chunks=64)
                scenarios[f"chat c={c}"] = await compare(*pair, count, c, rounds)
            for label, chunks, c, tools in (
                ("stream 64 chunks c=1", 64, 1, False),
                ("stream 1024 chunks c=1", 1024, 1, False),
                ("stream 64 chunks c=64", 64, 64, False),
                ("stream 64 with tools c=1", 64, 1, True),
            ):
                pair = chat_pair(fake_url, shim_url, stream=True, chunks=chunks, tools=tools)
                count = n // 2 if chunks < 1024 else max(n // 8, 20)
                scenarios[label] = await compare(*pair, count * (4 if c > 1 else 1), c, rounds)
            texts = [f"sentence number {i} to embed" for i in range(16)]
            direct = Target(
                "direct", f"{fake_url}/api/embed", orjson.dumps({"model": "bench", "input": texts})
            )
            via = Target(
                "shim",
                f"{shim_url}/v1/embeddings",
                orjson.dumps({"model": "bench", "input": texts, "encoding_format": "base64"}),
            )
            scenarios["embeddings 16×768 base64 c=1"] = await compare(
                direct, via, n // 2, 1, rounds
            )
            direct = Target("direct", f"{fake_url}/api/tags", None)
            via = Target("shim", f"{shim_url}/v1/models", None)
            scenarios["models c=1"] = await compare(direct, via, n // 2, 1, rounds)
            small = scenarios["stream 64 chunks c=1"]["added_p50_ms"]
            large = scenarios["stream 1024 chunks c=1"]["added_p50_ms"]
            results["per_chunk_added_us"] = (large - small) * 1000 / (1025 - 65)
            shim_cpu, fake_cpu = await cpu_per_chunk(
                fake_url, shim_url, fake.pid, shim.pid, args.rounds * 10
            )
            results["cpu_per_chunk_us"] = shim_cpu
            results["fake_ollama_cpu_per_chunk_us"] = fake_cpu
            results["rss_256_streams_mib"] = await open_streams(shim_url, shim.pid, 256)
            results["rss_peak_mib"] = rss_kib(shim.pid, "VmHWM") / 1024
            if args.litellm:
                results["litellm"] = await litellm_side(args, fake_url)
            if args.plot:
                results["sweep"] = {}
                for c in SWEEP:
                    pair = chat_pair(fake_url, shim_url, stream=False, chunks=64)
                    results["sweep"][str(c)] = await compare(*pair, max(n, c * 20), c, rounds)
        finally:
            shim.terminate()
            await shim.wait()
    finally:
        fake.terminate()
        await fake.wait()
    return results


def report(results: dict[str, Any]) -> str:
    lines = [
        f"oai2ollama bench — {results['machine']}, loop {results['loop']}",
        "",
        f"{'scenario':<30}{'direct p50':>11}{'shim p50':>10}{'added p50':>11}{'added p99':>11}"
        f"{'direct rps':>12}{'shim rps':>10}{'ratio':>7}",
    ]
    for key, r in results["scenarios"].items():
        lines.append(
            f"{key:<30}{r['direct_p50_ms']:>9.3f}ms{r['shim_p50_ms']:>8.3f}ms"
            f"{r['added_p50_ms']:>9.3f}ms{r['added_p99_ms']:>9.3f}ms"
            f"{r['direct_rps']:>12.0f}{r['shim_rps']:>10.0f}{r['throughput_ratio']:>7.2f}"
        )
    scenarios = results["scenarios"]
    errors = sum(r["errors"] for r in scenarios.values())
    ttfb = scenarios["stream 64 chunks c=1"]["ttfb_added_ms"]
    lines += [
        "",
        f"streaming: added time to first byte {ttfb:.3f} ms; added per chunk "
        f"{results['per_chunk_added_us']:.1f} µs (1024 minus 64 chunks, per extra chunk); "
        f"CPU per chunk arriving alone: shim {results['cpu_per_chunk_us']:.1f} µs, "
        f"the fake Ollama sending it {results['fake_ollama_cpu_per_chunk_us']:.1f} µs",
        f"shim RSS: idle {results['rss_idle_mib']:.1f} MiB, with 256 open streams "
        f"{results['rss_256_streams_mib']:.1f} MiB, peak {results['rss_peak_mib']:.1f} MiB; "
        f"start to ready {results['start_to_ready_s']:.3f} s; errors {errors}",
    ]
    litellm = results.get("litellm")
    if litellm:
        lines += ["", "LiteLLM proxy against the same fake Ollama:"]
        for key in ("chat c=1", "chat c=64", "stream 64 chunks c=1"):
            r = litellm[key]
            lines.append(
                f"{key:<30}{r['direct_p50_ms']:>9.3f}ms{r['shim_p50_ms']:>8.3f}ms"
                f"{r['added_p50_ms']:>9.3f}ms{r['added_p99_ms']:>9.3f}ms"
                f"{r['direct_rps']:>12.0f}{r['shim_rps']:>10.0f}{r['throughput_ratio']:>7.2f}"
            )
        lines.append(
            f"LiteLLM RSS: idle {litellm['rss_idle_mib']:.1f} MiB, peak "
            f"{litellm['rss_peak_mib']:.1f} MiB; start to ready {litellm['start_to_ready_s']:.1f} s"
        )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install 'oai2ollama[bench]' for matplotlib)")
        return
    sweep = results["sweep"]
    levels = sorted(sweep, key=int)
    xs = [int(c) for c in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(xs, [sweep[c]["added_p50_ms"] for c in levels], marker="o", label="p50")
    left.plot(xs, [sweep[c]["added_p99_ms"] for c in levels], marker="o", label="p99")
    left.set(xscale="log", xlabel="concurrent requests", ylabel="added latency (ms)")
    left.set_title("Latency the shim adds (non-stream chat)")
    left.legend()
    right.plot(xs, [sweep[c]["direct_rps"] for c in levels], marker="o", label="direct")
    right.plot(xs, [sweep[c]["shim_rps"] for c in levels], marker="o", label="through shim")
    right.set(xscale="log", xlabel="concurrent requests", ylabel="requests / s")
    right.set_title("Throughput against a fake Ollama")
    right.legend()
    fig.suptitle(results["machine"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure what oai2ollama adds.")
    parser.add_argument("--requests", type=int, default=400, help="requests per round at c=1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="also sweep concurrency and plot it here")
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="the shim's loop"
    )
    parser.add_argument(
        "--litellm",
        metavar="PATH",
        help="also run the chat scenarios through a LiteLLM proxy: the path of its `litellm` "
        "command (pip install 'litellm[proxy]' in a separate venv)",
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 60, 1
    results = asyncio.run(run(args))
    print(report(results))
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
