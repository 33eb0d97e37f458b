"""Prometheus metrics, one registry per app (so several apps can live in one process).

Each replica serves its own /metrics; the `replica` label names the process, so series from
replicas behind one load balancer stay apart even when scraped through it.
"""

from __future__ import annotations

import os
import socket

from prometheus_client import CollectorRegistry, Counter, Histogram


def default_replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class HttpMetrics:
    def __init__(self, replica: str | None = None) -> None:
        self.replica = replica or default_replica_name()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tollhouse_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status", "replica"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tollhouse_http_request_duration_seconds",
            "Time to the end of the response, by route template.",
            ["method", "route", "replica"],
            registry=self.registry,
        )
        self.errors = Counter(
            "tollhouse_http_errors_total",
            "Responses with status >= 400, by route template and status.",
            ["route", "status", "replica"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status), self.replica).inc()
        self.latency.labels(method, route, self.replica).observe(seconds)
        if status >= 400:
            self.errors.labels(route, str(status), self.replica).inc()
