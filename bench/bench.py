"""Benchmark: what oai2ollama costs, against a bare pass-through (the floor) and against
calling Ollama directly.

Starts a fast fake Ollama, the floor (``bench/floor.py``: chat and embeddings translated with no
validation and no middleware) and oai2ollama as separate processes, then drives all three with
the same bounded load, interleaved round by round (direct, floor, server, direct, …). The primary
figure is each server's own CPU time per request (process CPU seconds from ``/proc`` ÷ requests);
latency percentiles and throughput come second. Every figure is the median of the rounds with
its min–max. Nothing leaves 127.0.0.1.

    python bench/bench.py                       # the default run (several minutes)
    python bench/bench.py --quick               # a smoke run
    python bench/bench.py --json out.json       # also write the figures as JSON
    python bench/bench.py --plot docs/benchmarks.png   # also plot (needs matplotlib)
    python bench/bench.py --api-key k           # keys and the access log on, as services run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
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
# Sent with every benchmark request: Authorization joins it when the server wants a key (the
# floor and the fake Ollama ignore it).
REQUEST_HEADERS: dict[str, str] = {"Content-Type": "application/json"}
EMBED_TEXTS = [f"sentence number {i} to embed" for i in range(16)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time of a process so far, all its threads, in nanosecond resolution (the scheduler's
    own account in ``/proc/PID/task/*/schedstat``; ``/proc/PID/stat`` counts in 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Spread:
    """A figure over the rounds: its median and its range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def show(self, fmt: str = "{:.3f}") -> str:
        return f"{fmt.format(self.median)} [{fmt.format(self.low)}–{fmt.format(self.high)}]"

    @classmethod
    def load(cls, d: dict[str, float]) -> Spread:
        return cls(d["median"], d["min"], d["max"])

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}


@dataclass
class Target:
    """One way to ask for the same thing, and what each round measured."""

    name: str
    url: str
    body: bytes | None  # None: GET
    pid: int  # the process whose CPU counts for this target
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    errors: int = 0

    def clear(self) -> None:
        for values in (self.p50, self.p99, self.ttfb, self.rps, self.cpu_us):
            values.clear()


async def one(
    session: aiohttp.ClientSession, target: Target, latencies: list[float], ttfb: list[float]
) -> None:
    started = time.perf_counter()
    method = "GET" if target.body is None else "POST"
    async with session.request(method, target.url, data=target.body) as resp:
        first = True
        async for _ in resp.content.iter_any():
            if first:
                ttfb.append(time.perf_counter() - started)
                first = False
        if resp.status != 200:
            target.errors += 1
    latencies.append(time.perf_counter() - started)


async def round_of(
    session: aiohttp.ClientSession, target: Target, count: int, concurrency: int
) -> None:
    queue = iter(range(count))
    latencies: list[float] = []
    ttfb: list[float] = []

    async def worker() -> None:
        for _ in queue:
            await one(session, target, latencies, ttfb)

    cpu_before = cpu_seconds(target.pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    target.cpu_us.append((cpu_seconds(target.pid) - cpu_before) / count * 1e6)
    target.rps.append(count / elapsed)
    target.p50.append(statistics.median(latencies) * 1000)
    target.p99.append(percentile(latencies, 0.99) * 1000)
    if ttfb:
        target.ttfb.append(statistics.median(ttfb) * 1000)


async def compare(targets: list[Target], count: int, concurrency: int, rounds: int) -> dict:
    """Interleaved rounds of the same load against every target (the first is direct)."""
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, headers=REQUEST_HEADERS) as session:
        for target in targets:  # warm up connections and code paths
            await round_of(session, target, min(count, 50), concurrency)
            target.clear()
        for _ in range(rounds):
            for target in targets:
                await round_of(session, target, count, concurrency)
    return summarise(targets, count, concurrency)


def summarise(targets: list[Target], count: int, concurrency: int) -> dict[str, Any]:
    direct = targets[0]
    out: dict[str, Any] = {
        "requests_per_round": count,
        "concurrency": concurrency,
        "errors": sum(t.errors for t in targets),
    }
    for t in targets:
        figures = {
            "cpu_us": Spread.of(t.cpu_us),
            "p50_ms": Spread.of(t.p50),
            "p99_ms": Spread.of(t.p99),
            "rps": Spread.of(t.rps),
        }
        if t is not direct:
            # Differences and ratios are taken round by round, then summarised.
            figures["added_p50_ms"] = Spread.of(_minus(t.p50, direct.p50))
            figures["added_p99_ms"] = Spread.of(_minus(t.p99, direct.p99))
            figures["rps_ratio"] = Spread.of(
                [s / d for s, d in zip(t.rps, direct.rps, strict=True)]
            )
            if t.ttfb and direct.ttfb:
                figures["added_ttfb_ms"] = Spread.of(_minus(t.ttfb, direct.ttfb))
        out[t.name] = {k: v.as_dict() for k, v in figures.items()}
    names = [t.name for t in targets]
    if "floor" in names and "server" in names:
        server, floor = targets[names.index("server")], targets[names.index("floor")]
        out["cpu_ratio_to_floor"] = Spread.of(
            [s / f for s, f in zip(server.cpu_us, floor.cpu_us, strict=True) if f > 0]
            or [float("nan")]
        ).as_dict()
    return out


def _minus(these: Sequence[float], those: Sequence[float]) -> list[float]:
    return [a - b for a, b in zip(these, those, strict=True)]


def chat_bodies(*, stream: bool, chunks: int, tools: bool = False) -> tuple[bytes, bytes]:
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
    return orjson.dumps(native), orjson.dumps(openai)


@dataclass
class Processes:
    fake_url: str
    fake_pid: int
    server_url: str
    server_pid: int
    floor_url: str | None = None
    floor_pid: int = 0

    def targets(self, native_path: str, openai_path: str, native: bytes | None, openai: Any):
        """direct, floor (where it serves the route) and the server, for one request."""
        out = [Target("direct", f"{self.fake_url}{native_path}", native, self.fake_pid)]
        if self.floor_url and openai_path in ("/v1/chat/completions", "/v1/embeddings"):
            out.append(Target("floor", f"{self.floor_url}{openai_path}", openai, self.floor_pid))
        out.append(Target("server", f"{self.server_url}{openai_path}", openai, self.server_pid))
        return out


async def start_fake(port: int, *args: str) -> asyncio.subprocess.Process:
    """The fast fake Ollama, as its own process."""
    script = str(HERE / "fast_ollama.py")
    return await asyncio.create_subprocess_exec(
        sys.executable, script, "--port", str(port), *args, stdout=subprocess.DEVNULL
    )


async def start_floor(port: int, ollama_url: str, loop: str) -> asyncio.subprocess.Process:
    script = str(HERE / "floor.py")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        "--port",
        str(port),
        "--ollama-url",
        ollama_url,
        "--loop",
        loop,
        stdout=subprocess.DEVNULL,
    )


async def start_shim(
    port: int, ollama_url: str, loop: str = "auto", extra: Sequence[str] = ()
) -> asyncio.subprocess.Process:
    """The server, as its own process, as a user would start it (but quiet unless ``extra``
    asks for more)."""
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
        *extra,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if extra else None,
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


async def start_to_ready(fake_url: str, loop: str, extra: Sequence[str], times: int) -> Spread:
    """From launching the process to its first 200 on /healthz, ``times`` launches."""
    seconds = []
    for _ in range(times):
        port = free_port()
        launched = time.perf_counter()
        proc = await start_shim(port, fake_url, loop, extra)
        try:
            await wait_ready(f"http://127.0.0.1:{port}/healthz")
            seconds.append(time.perf_counter() - launched)
        finally:
            proc.terminate()
            await proc.wait()
    return Spread.of(seconds)


async def cpu_per_chunk(procs: Processes, streams: int) -> dict[str, float]:
    """CPU per streamed chunk (µs) when chunks arrive one at a time, as from a real model: the
    server's and the floor's (reading, translating, writing each one), and for scale, the fake
    Ollama's own for the same stream sent directly (one write per chunk)."""
    native = {
        "model": "bench",
        "messages": MESSAGES,
        "stream": True,
        "options": {"num_predict": 1024, "bench_delay": 0.0003},
    }
    openai = {**native, "max_tokens": 1024}
    chunks = streams * 1025
    out = {}
    sides = [("server", procs.server_pid, f"{procs.server_url}/v1/chat/completions", openai)]
    if procs.floor_url:
        sides.append(("floor", procs.floor_pid, f"{procs.floor_url}/v1/chat/completions", openai))
    sides.append(("direct", procs.fake_pid, f"{procs.fake_url}/api/chat", native))
    async with aiohttp.ClientSession(headers=REQUEST_HEADERS) as session:
        for name, pid, url, body in sides:
            data = orjson.dumps(body)
            before = cpu_seconds(pid)
            for _ in range(streams):
                async with session.post(url, data=data) as resp:
                    await resp.read()
            out[name] = (cpu_seconds(pid) - before) / chunks * 1e6
    return out


async def open_streams(server_url: str, pid: int, count: int) -> float:
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
    async with aiohttp.ClientSession(connector=connector, headers=REQUEST_HEADERS) as session:

        async def stream() -> None:
            async with session.post(f"{server_url}/v1/chat/completions", data=body) as resp:
                async for _ in resp.content.iter_any():
                    pass

        tasks = [asyncio.ensure_future(stream()) for _ in range(count)]
        while not all(t.done() for t in tasks):
            peak = max(peak, rss_kib(pid) / 1024)
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)
    return peak


def scenarios(args: argparse.Namespace) -> list[tuple[str, str, str, bytes | None, Any, int, int]]:
    """(label, native path, OpenAI path, native body, OpenAI body, requests per round, c)."""
    n = args.requests
    out = []
    for c in SWEEP:
        native, openai = chat_bodies(stream=False, chunks=64)
        out.append((f"chat c={c}", "/api/chat", "/v1/chat/completions", native, openai, n, c))
    for label, chunks, c, tools in (
        ("stream 64 chunks c=1", 64, 1, False),
        ("stream 1024 chunks c=1", 1024, 1, False),
        ("stream 64 chunks c=64", 64, 64, False),
        ("stream 64 with tools c=1", 64, 1, True),
    ):
        native, openai = chat_bodies(stream=True, chunks=chunks, tools=tools)
        count = n // 2 if chunks < 1024 else max(n // 8, 20)
        out.append((label, "/api/chat", "/v1/chat/completions", native, openai, count, c))
    out.append(
        (
            "embeddings 16×768 base64 c=1",
            "/api/embed",
            "/v1/embeddings",
            orjson.dumps({"model": "bench", "input": EMBED_TEXTS}),
            orjson.dumps({"model": "bench", "input": EMBED_TEXTS, "encoding_format": "base64"}),
            n // 2,
            1,
        )
    )
    out.append(("models c=1", "/api/tags", "/v1/models", None, None, n // 2, 1))
    return out


def versions(loop: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("oai2ollama", "aiohttp", "orjson", "uvloop"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    out["loop"] = ("uvloop" if out["uvloop"] != "-" else "asyncio") if loop == "auto" else loop
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    fake_port, server_port, floor_port = free_port(), free_port(), free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    extra = shlex.split(args.server_args)
    fake = await start_fake(fake_port, "--tokens", "64")
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": versions(args.loop),
        "server_args": args.server_args,
        "rounds": args.rounds,
    }
    try:
        await wait_ready(f"{fake_url}/api/version")
        results["start_to_ready_s"] = (
            await start_to_ready(fake_url, args.loop, extra, args.rounds)
        ).as_dict()
        server = await start_shim(server_port, fake_url, args.loop, extra)
        floor = await start_floor(floor_port, fake_url, args.loop)
        procs = Processes(
            fake_url,
            fake.pid,
            f"http://127.0.0.1:{server_port}",
            server.pid,
            f"http://127.0.0.1:{floor_port}",
            floor.pid,
        )
        try:
            await wait_ready(f"{procs.server_url}/healthz")
            await wait_ready(f"{procs.floor_url}/healthz")
            await asyncio.sleep(0.5)
            results["rss_idle_mib"] = rss_kib(server.pid) / 1024
            results["floor_rss_idle_mib"] = rss_kib(floor.pid) / 1024
            table = results["scenarios"] = {}
            for label, npath, opath, native, openai, count, c in scenarios(args):
                targets = procs.targets(npath, opath, native, openai)
                table[label] = await compare(targets, count * (4 if c > 1 else 1), c, args.rounds)
                print(f"  {label}: done", file=sys.stderr)
            small = table["stream 64 chunks c=1"]["server"]["added_p50_ms"]["median"]
            large = table["stream 1024 chunks c=1"]["server"]["added_p50_ms"]["median"]
            results["per_chunk_added_us"] = (large - small) * 1000 / (1025 - 65)
            small_cpu = table["stream 64 chunks c=1"]["server"]["cpu_us"]["median"]
            large_cpu = table["stream 1024 chunks c=1"]["server"]["cpu_us"]["median"]
            results["per_chunk_cpu_us"] = (large_cpu - small_cpu) / (1025 - 65)
            results["cpu_per_lone_chunk_us"] = await cpu_per_chunk(procs, args.rounds * 4)
            results["rss_256_streams_mib"] = await open_streams(procs.server_url, server.pid, 256)
            results["rss_peak_mib"] = rss_kib(server.pid, "VmHWM") / 1024
            if args.litellm:
                results["litellm"] = await litellm_side(args, fake_url)
        finally:
            for proc in (server, floor):
                proc.terminate()
                await proc.wait()
    finally:
        fake.terminate()
        await fake.wait()
    return results


async def litellm_side(args: argparse.Namespace, fake_url: str) -> dict[str, Any]:
    """The chat scenarios through a LiteLLM proxy, in the same form (not part of CI)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"}
    command = [
        args.litellm,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        "ollama_chat/bench",
        "--api_base",
        fake_url,
    ]
    python = Path(args.litellm).with_name("python")
    probe = await asyncio.create_subprocess_exec(
        str(python),
        "-c",
        "import importlib.metadata as m; print(m.version('litellm'))",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    found, _ = await probe.communicate()
    out: dict[str, Any] = {
        "version": found.decode().strip() or "unknown",
        "command": " ".join(["litellm", *command[1:]]).replace(fake_url, "<fake ollama>"),
    }
    launched = time.perf_counter()
    proxy = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        await wait_ready(f"{url}/health/liveliness", limit=120)
        out["start_to_ready_s"] = time.perf_counter() - launched
        out["rss_idle_mib"] = rss_kib(proxy.pid) / 1024
        table = out["scenarios"] = {}
        for label, stream, c in (
            ("chat c=1", False, 1),
            ("chat c=64", False, 64),
            ("stream 64 chunks c=1", True, 1),
        ):
            native, _ = chat_bodies(stream=stream, chunks=64)
            body = {
                "model": "ollama_chat/bench",
                "messages": MESSAGES,
                "stream": stream,
                "max_tokens": 64,
            }
            targets = [
                Target("direct", f"{fake_url}/api/chat", native, 0),
                Target("litellm", f"{url}/v1/chat/completions", orjson.dumps(body), proxy.pid),
            ]
            targets[0].pid = os.getpid()  # the direct side's CPU is not reported here
            count = args.requests * (4 if c > 1 else 1) // 4
            table[label] = await compare(targets, count, c, args.rounds)
        out["rss_peak_mib"] = rss_kib(proxy.pid, "VmHWM") / 1024
    finally:
        proxy.terminate()
        await proxy.wait()
    return out


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "".join(
        c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def report(results: dict[str, Any]) -> str:
    v = results["versions"]
    lines = [
        f"oai2ollama {v['oai2ollama']} bench — {results['machine']}, Python {v['python']}, "
        f"aiohttp {v['aiohttp']}, orjson {v['orjson']}, loop {v['loop']}; "
        f"median [min–max] of {results['rounds']} interleaved rounds"
        + (f"; server args: {results['server_args']}" if results["server_args"] else ""),
        "",
        "CPU per request (µs of the process's own CPU time ÷ requests)",
    ]
    widths = (30, 26, 26, 22)
    lines.append(_row(("scenario", "server", "floor", "server ÷ floor"), widths))
    for key, r in results["scenarios"].items():
        server = Spread.load(r["server"]["cpu_us"]).show("{:.0f}")
        floor = Spread.load(r["floor"]["cpu_us"]).show("{:.0f}") if "floor" in r else "—"
        ratio = Spread.load(r["cpu_ratio_to_floor"]).show("{:.2f}") if "floor" in r else "—"
        lines.append(_row((key, server, floor, ratio), widths))
    lines += ["", "Latency added to direct (ms) and throughput as a share of direct"]
    widths = (30, 24, 24, 24, 20, 20)
    lines.append(
        _row(
            ("scenario", "server p50", "floor p50", "server p99", "server rps", "floor rps"),
            widths,
        )
    )
    for key, r in results["scenarios"].items():
        s = r["server"]
        f = r.get("floor")
        lines.append(
            _row(
                (
                    key,
                    Spread.load(s["added_p50_ms"]).show(),
                    Spread.load(f["added_p50_ms"]).show() if f else "—",
                    Spread.load(s["added_p99_ms"]).show(),
                    Spread.load(s["rps_ratio"]).show("{:.2f}"),
                    Spread.load(f["rps_ratio"]).show("{:.2f}") if f else "—",
                ),
                widths,
            )
        )
    table = results["scenarios"]
    errors = sum(r["errors"] for r in table.values())
    ttfb = table["stream 64 chunks c=1"]["server"]["added_ttfb_ms"]
    lone = results["cpu_per_lone_chunk_us"]
    lines += [
        "",
        f"streaming: added time to first byte {Spread.load(ttfb).show()} ms; per extra "
        f"chunk (1024 minus 64 chunks) {results['per_chunk_added_us']:.1f} µs added latency, "
        f"{results['per_chunk_cpu_us']:.1f} µs CPU",
        "CPU per chunk arriving alone: "
        + ", ".join(f"{name} {us:.1f} µs" for name, us in lone.items()),
        f"server RSS: idle {results['rss_idle_mib']:.1f} MiB (floor "
        f"{results['floor_rss_idle_mib']:.1f}), with 256 open streams "
        f"{results['rss_256_streams_mib']:.1f} MiB, peak {results['rss_peak_mib']:.1f} MiB; "
        f"start to ready {Spread.load(results['start_to_ready_s']).show()} s; "
        f"errors {errors}",
    ]
    litellm = results.get("litellm")
    if litellm:
        lines += [
            "",
            f"LiteLLM {litellm['version']} ({litellm['command']}), same fake Ollama:",
            _row(("scenario", "added p50", "added p99", "rps ÷ direct", "CPU/req µs"), widths[:5]),
        ]
        for key, r in litellm["scenarios"].items():
            x = r["litellm"]
            lines.append(
                _row(
                    (
                        key,
                        Spread.load(x["added_p50_ms"]).show(),
                        Spread.load(x["added_p99_ms"]).show(),
                        Spread.load(x["rps_ratio"]).show("{:.2f}"),
                        Spread.load(x["cpu_us"]).show("{:.0f}"),
                    ),
                    widths[:5],
                )
            )
        lines.append(
            f"LiteLLM RSS: idle {litellm['rss_idle_mib']:.1f} MiB, peak "
            f"{litellm['rss_peak_mib']:.1f} MiB; start to ready {litellm['start_to_ready_s']:.1f} s"
        )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """The non-stream chat rows of the table, by concurrency: the same runs, the same figures."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install 'oai2ollama[bench]' for matplotlib)")
        return
    table = results["scenarios"]
    levels = [c for c in SWEEP if f"chat c={c}" in table]
    rows = [table[f"chat c={c}"] for c in levels]
    xs = list(range(len(levels)))
    fig, (cpu, lat, thr) = plt.subplots(1, 3, figsize=(13, 4))

    def line(ax: Any, who: str, key: str, label: str) -> None:
        med = [r[who][key]["median"] for r in rows]
        low = [m - r[who][key]["min"] for m, r in zip(med, rows, strict=True)]
        high = [r[who][key]["max"] - m for m, r in zip(med, rows, strict=True)]
        ax.errorbar(xs, med, yerr=[low, high], marker="o", capsize=3, label=label)

    line(cpu, "server", "cpu_us", "oai2ollama")
    line(cpu, "floor", "cpu_us", "floor")
    cpu.set(ylabel="CPU µs per request", title="CPU per non-stream chat")
    line(lat, "server", "added_p50_ms", "oai2ollama p50")
    line(lat, "floor", "added_p50_ms", "floor p50")
    line(lat, "server", "added_p99_ms", "oai2ollama p99")
    lat.set(ylabel="ms added to direct", title="Added latency")
    line(thr, "direct", "rps", "direct")
    line(thr, "floor", "rps", "floor")
    line(thr, "server", "rps", "oai2ollama")
    thr.set(ylabel="requests / s", title="Throughput")
    for ax in (cpu, lat, thr):
        ax.set_xticks(xs, [str(c) for c in levels])
        ax.set_xlabel("concurrent requests")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    v = results["versions"]
    fig.suptitle(
        f"oai2ollama {v['oai2ollama']} against the floor and direct — Python {v['python']}, "
        f"aiohttp {v['aiohttp']}, orjson {v['orjson']}, loop {v['loop']}, "
        f"{results['machine']}; median and min–max of {results['rounds']} rounds",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure what oai2ollama costs.")
    parser.add_argument("--requests", type=int, default=400, help="requests per round at c=1")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (at least 5)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="also plot the chat rows here")
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="the servers' loop"
    )
    parser.add_argument(
        "--server-args", default="", help="extra arguments for oai2ollama, e.g. '--api-key k'"
    )
    parser.add_argument(
        "--litellm",
        metavar="PATH",
        help="also run the chat scenarios through a LiteLLM proxy: the path of its `litellm` "
        "command (pip install 'litellm[proxy]' in a separate venv)",
    )
    parser.add_argument(
        "--report", type=Path, help="print the table (and plot) of a run saved with --json"
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="start the server with this key (and the access log at info level, as a service "
        "runs) and send it with every request",
    )
    args = parser.parse_args()
    if args.api_key:
        args.server_args = f"{args.server_args} --api-key {args.api_key} --log-level info".strip()
        REQUEST_HEADERS["Authorization"] = f"Bearer {args.api_key}"
    if args.quick:
        args.requests, args.rounds = 60, 2
    if args.report:  # draw the table and plot again from an earlier run's figures
        results = orjson.loads(args.report.read_bytes())
    else:
        results = asyncio.run(run(args))
        if args.json:
            args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(report(results))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
