"""Prometheus metrics, in a registry owned by the app (never the global default)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    """The gateway's metrics; exposed at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.proxy_requests = Counter(
            "relaygate_proxy_requests",
            "Proxied requests by response status class",
            ["status"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "relaygate_upstream_errors",
            "Upstream failures by kind",
            ["kind"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "relaygate_proxy_in_flight", "Proxied requests in progress", registry=self.registry
        )
        self.snapshot_version = Gauge(
            "relaygate_snapshot_version",
            "Change counter of the loaded snapshot",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "relaygate_rate_limited",
            "Requests refused by a rate limit, by the limit reached (requests or tokens)",
            ["limit"],
            registry=self.registry,
        )
        self.rate_limit_store_errors = Counter(
            "relaygate_rate_limit_store_errors",
            "Rate-limit calls to Redis that failed (and were counted in the process instead)",
            registry=self.registry,
        )
