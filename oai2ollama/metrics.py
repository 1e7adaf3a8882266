"""Prometheus metrics, written by hand: a few counters, gauges and histograms, rendered as text.

A model name gets a label of its own only when Ollama answered for it, or when it is an alias
the operator configured; any other name a client sends is ``other``, so clients cannot make the
metrics grow (and the names Ollama answered for are capped too).
"""

from __future__ import annotations

import bisect
import os
import platform
import sys
import time
from collections import defaultdict
from typing import Any

import aiohttp

from . import __version__

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
MAX_MODELS = 64


class Histogram:
    __slots__ = ("buckets", "count", "counts", "total")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.total += value

    def render(self, name: str, labels: str) -> list[str]:
        lines = []
        running = 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            lines.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}')
        lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum{{{labels}}} {self.total:.6f}")
        lines.append(f"{name}_count{{{labels}}} {self.count}")
        return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self, policy: Any = None) -> None:
        self._policy = policy
        self._aliases = frozenset(
            name for name, _ in (policy.aliases if policy is not None else ()) if not _glob(name)
        )
        self._started = time.time()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.durations: dict[str, Histogram] = {}
        self.first_token: dict[str, Histogram] = {}
        self.tokens: dict[tuple[str, str], int] = defaultdict(int)
        self.upstream_errors: dict[str, int] = defaultdict(int)
        self.open_streams = 0
        self.in_flight = 0
        self.queued = 0
        self.rejected = 0
        self._models: set[str] = set()

    def model_label(self, model: str | None, target: str | None, status: int) -> str:
        """The label for ``model``: its name if Ollama answered for that name (``target`` is
        the local model that answered) or it is an exact alias; the pattern of a wildcard alias;
        else ``other``."""
        if not model:
            return ""
        if model in self._models or model in self._aliases:
            return model
        if target is not None and 200 <= status < 300:
            if target == model:
                if len(self._models) < MAX_MODELS:
                    self._models.add(model)
                    return model
            elif self._policy is not None:
                pattern = self._policy.alias_pattern(model)
                if pattern is not None:
                    return pattern
        return "other"

    def request(self, route: str, label: str, status: int, seconds: float) -> None:
        self.requests[(route, label, status)] += 1
        histogram = self.durations.get(route)
        if histogram is None:
            histogram = self.durations[route] = Histogram(DURATION_BUCKETS)
        histogram.observe(seconds)

    def time_to_first_token(self, route: str, seconds: float) -> None:
        histogram = self.first_token.get(route)
        if histogram is None:
            histogram = self.first_token[route] = Histogram(DURATION_BUCKETS)
        histogram.observe(seconds)

    def usage(self, label: str, prompt: int, completion: int) -> None:
        self.tokens[("prompt", label)] += prompt
        self.tokens[("completion", label)] += completion

    def upstream_error(self, code: str | None) -> None:
        self.upstream_errors[code or "upstream_error"] += 1

    def render(self, *, ollama_up: bool | None = None) -> str:
        out: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        head("oai2ollama_requests_total", "counter", "Requests answered, by route, model, status.")
        for (route, model, status), count in sorted(self.requests.items()):
            out.append(
                f'oai2ollama_requests_total{{route="{route}",model="{_escape(model)}",'
                f'status="{status}"}} {count}'
            )
        head("oai2ollama_request_duration_seconds", "histogram", "Time to answer, by route.")
        for route, histogram in sorted(self.durations.items()):
            out += histogram.render("oai2ollama_request_duration_seconds", f'route="{route}"')
        head(
            "oai2ollama_time_to_first_token_seconds",
            "histogram",
            "Time from request to the first streamed token, by route.",
        )
        for route, histogram in sorted(self.first_token.items()):
            out += histogram.render("oai2ollama_time_to_first_token_seconds", f'route="{route}"')
        head("oai2ollama_tokens_total", "counter", "Tokens, by direction and model.")
        for (direction, model), count in sorted(self.tokens.items()):
            out.append(
                f'oai2ollama_tokens_total{{direction="{direction}",model="{_escape(model)}"}} '
                f"{count}"
            )
        head("oai2ollama_upstream_errors_total", "counter", "Failures of Ollama, by kind.")
        for code, count in sorted(self.upstream_errors.items()):
            out.append(f'oai2ollama_upstream_errors_total{{kind="{code}"}} {count}')
        head("oai2ollama_open_streams", "gauge", "Streams being written now.")
        out.append(f"oai2ollama_open_streams {self.open_streams}")
        head("oai2ollama_in_flight_requests", "gauge", "Generation requests at Ollama now.")
        out.append(f"oai2ollama_in_flight_requests {self.in_flight}")
        head("oai2ollama_queued_requests", "gauge", "Requests waiting for a slot now.")
        out.append(f"oai2ollama_queued_requests {self.queued}")
        head("oai2ollama_rejected_requests_total", "counter", "Requests refused with 429.")
        out.append(f"oai2ollama_rejected_requests_total {self.rejected}")
        if ollama_up is not None:
            head("oai2ollama_ollama_up", "gauge", "1 if Ollama answered /api/version just now.")
            out.append(f"oai2ollama_ollama_up {int(ollama_up)}")
        head("oai2ollama_build_info", "gauge", "The running version, always 1.")
        out.append(
            f'oai2ollama_build_info{{version="{__version__}",'
            f'python="{platform.python_version()}",aiohttp="{aiohttp.__version__}"}} 1'
        )
        out += process_metrics(self._started)
        return "\n".join(out) + "\n"


def _glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def process_metrics(started: float) -> list[str]:
    """The conventional ``process_*`` metrics, from what the OS tells cheaply."""
    out: list[str] = []

    def one(name: str, kind: str, text: str, value: float) -> None:
        out.extend((f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"))

    times = os.times()
    one("process_cpu_seconds_total", "counter", "CPU time, user and system.", times[0] + times[1])
    rss = _rss()
    if rss is not None:
        one("process_resident_memory_bytes", "gauge", "Resident memory.", rss)
    fds = _open_fds()
    if fds is not None:
        one("process_open_fds", "gauge", "Open file descriptors.", fds)
    if resource is not None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            one("process_max_fds", "gauge", "Limit on open file descriptors.", soft)
    one("process_start_time_seconds", "gauge", "Start time, Unix seconds.", round(started, 3))
    return out


def _rss() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the peak, where /proc is absent
    return peak if sys.platform == "darwin" else peak * 1024


def _open_fds() -> int | None:
    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(path)) - 1  # less the one listing it
        except OSError:
            continue
    return None
