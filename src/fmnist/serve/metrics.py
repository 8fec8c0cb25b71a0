"""Prometheus metrics in the text exposition format, hand-written (no client library).

Each server process keeps its own counters: with ``--workers N`` a scrape of ``/metrics`` sees
the worker that answered it. Format reference:
https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
"""

from __future__ import annotations

import bisect
import threading

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: loopback requests take ~1 ms; the top buckets catch stalls.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
# Images per onnxruntime call.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(x: float) -> str:
    if x == float("inf"):
        return "+Inf"
    return repr(float(x)) if isinstance(x, float) else str(x)


class Histogram:
    """A Prometheus histogram per label set: cumulative buckets, sum and count."""

    def __init__(self, name: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...]):
        self.name, self.help, self.label_names = name, help, labels
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list] = {}  # labels -> [counts per bucket, sum, count]

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        s = self._series.get(labels)
        if s is None:
            s = self._series[labels] = [[0] * len(self.buckets), 0, 0]
        # per-bucket counts, made cumulative on render; value <= bound lands in bound's bucket
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.buckets):
            s[0][i] += 1
        s[1] += value
        s[2] += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, (counts, total, count) in sorted(self._series.items()):
            cumulative = 0
            for bound, c in zip(self.buckets, counts, strict=True):
                cumulative += c
                le = _labels(self.label_names, labels, f'le="{_num(bound)}"')
                out.append(f"{self.name}_bucket{le} {cumulative}")
            inf = _labels(self.label_names, labels, 'le="+Inf"')
            out.append(f"{self.name}_bucket{inf} {count}")
            out.append(f"{self.name}_sum{_labels(self.label_names, labels)} {_num(total)}")
            out.append(f"{self.name}_count{_labels(self.label_names, labels)} {count}")
        return out


class Counter:
    """A Prometheus counter per label set."""

    def __init__(self, name: str, help: str, labels: tuple[str, ...]):
        self.name, self.help, self.label_names = name, help, labels
        self._series: dict[tuple[str, ...], int] = {}

    def inc(self, labels: tuple[str, ...], amount: int = 1) -> None:
        self._series[labels] = self._series.get(labels, 0) + amount

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for labels, value in sorted(self._series.items()):
            out.append(f"{self.name}{_labels(self.label_names, labels)} {value}")
        return out


class Metrics:
    """The server's metrics: requests by route and status, request latency, batch sizes.

    Updated from the event loop and from the batcher's thread, so writes take a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = Counter(
            "fmnist_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ("route", "method", "status"),
        )
        self.latency = Histogram(
            "fmnist_http_request_duration_seconds",
            "Time from request start to the last byte of the response, by route template.",
            ("route",),
            LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "fmnist_batch_size",
            "Images per onnxruntime call, by model function.",
            ("op",),
            BATCH_BUCKETS,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests.inc((route, method, str(status)))
            self.latency.observe((route,), seconds)

    def observe_batch(self, op: str, size: int) -> None:
        with self._lock:
            self.batch_size.observe((op,), size)

    def render(self) -> str:
        with self._lock:
            lines = [*self.requests.render(), *self.latency.render(), *self.batch_size.render()]
        return "\n".join(lines) + "\n"
