"""Prometheus metrics, written by hand: a few counters, gauges and histograms, rendered as text.

Label values that come from clients (model names) are capped, so a client cannot make the
metrics grow without bound.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

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
    def __init__(self) -> None:
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

    def model_label(self, model: str | None) -> str:
        if not model:
            return ""
        if model in self._models:
            return model
        if len(self._models) < MAX_MODELS:
            self._models.add(model)
            return model
        return "other"

    def request(self, route: str, model: str | None, status: int, seconds: float) -> None:
        self.requests[(route, self.model_label(model), status)] += 1
        histogram = self.durations.get(route)
        if histogram is None:
            histogram = self.durations[route] = Histogram(DURATION_BUCKETS)
        histogram.observe(seconds)

    def time_to_first_token(self, route: str, seconds: float) -> None:
        histogram = self.first_token.get(route)
        if histogram is None:
            histogram = self.first_token[route] = Histogram(DURATION_BUCKETS)
        histogram.observe(seconds)

    def usage(self, model: str | None, prompt: int, completion: int) -> None:
        label = self.model_label(model)
        self.tokens[("prompt", label)] += prompt
        self.tokens[("completion", label)] += completion

    def upstream_error(self, code: str | None) -> None:
        self.upstream_errors[code or "upstream_error"] += 1

    def render(self) -> str:
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
        return "\n".join(out) + "\n"
