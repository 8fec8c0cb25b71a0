"""The server's Prometheus metrics, kept by ``prometheus_client``.

One process (``--workers 1``) keeps its values in memory, in the app's own registry. With
``--workers N``, ``fmnist serve`` points ``$PROMETHEUS_MULTIPROC_DIR`` at a new folder before the
workers start (:func:`multiprocess_dir`); prometheus_client then writes every worker's values to
memory-mapped files there, and a scrape of ``/metrics``, whichever worker answers it, sums all of
them (its multiprocess mode), so the counts are the server's, not one worker's.
https://prometheus.github.io/client_python/multiprocess/
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

# The classic text format (what generate_latest writes).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Where prometheus_client's multiprocess mode keeps the workers' values; read when it is imported.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: loopback requests take ~1 ms; the top buckets catch stalls.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
# Images per onnxruntime call.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# No `*_created` series: the multiprocess mode has none, so both modes expose the same families.
prometheus_client.disable_created_metrics()


class Metrics:
    """Requests by route template, method and status; request latency; images per model call.

    Updated from the event loop and from the batchers' threads (prometheus_client locks each value).
    """

    def __init__(self) -> None:
        # prometheus_client picks its mode once, when imported, from $PROMETHEUS_MULTIPROC_DIR: ask it.
        self.multiprocess = getattr(prometheus_client.values.ValueClass, "_multiprocess", False)
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fmnist_http_requests",  # exposed as fmnist_http_requests_total
            "HTTP requests answered, by route template, method and status code.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "fmnist_http_request_duration_seconds",
            "Time from request start to the last byte of the response, by route template.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "fmnist_batch_size",
            "Images per onnxruntime call, by model function.",
            ("op",),
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.reloads = Counter(
            "fmnist_bundle_reloads",  # exposed as fmnist_bundle_reloads_total
            "Bundle reloads (SIGHUP or --watch), by result: ok, or failed (the bundle was refused).",
            ("result",),
            registry=self.registry,
        )
        # Label children by label values: `.labels()` checks and converts its arguments on every call,
        # which is most of the cost per request; a dict lookup is not.
        self._request_series: dict[tuple[str, str, int], tuple] = {}
        self._batch_series: dict[str, Histogram] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
        series[0].inc()
        series[1].observe(seconds)

    def observe_batch(self, op: str, size: int) -> None:
        series = self._batch_series.get(op)
        if series is None:
            series = self._batch_series[op] = self.batch_size.labels(op)
        series.observe(size)

    def observe_reload(self, ok: bool) -> None:
        self.reloads.labels("ok" if ok else "failed").inc()

    def render(self) -> bytes:
        """The text exposition of this process, or of every worker in the multiprocess mode."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def close(self) -> None:
        """At a worker's exit: prometheus_client's bookkeeping for a dead process (its live gauges go;
        its counters and histograms stay, so the server's totals do not drop)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[str]:
    """``$PROMETHEUS_MULTIPROC_DIR`` for the worker processes started inside: a new temporary folder,
    removed at exit (a folder left from an earlier server would add its counts to this one's). One set
    by the caller is used as it is and kept."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        yield given
        return
    folder = tempfile.mkdtemp(prefix="fmnist-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)
