"""Prometheus metrics, in a registry owned by the app (never the global default).

Names follow the OpenTelemetry GenAI semantic conventions where one exists
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/), converted to
Prometheus style: ``gen_ai.client.operation.duration`` becomes
``gen_ai_client_operation_duration_seconds``, ``gen_ai.server.time_to_first_token``
becomes ``gen_ai_server_time_to_first_token_seconds`` and ``gen_ai.client.token.usage``
becomes ``gen_ai_client_token_usage``, with the labels ``gen_ai_request_model``
(the public model name), ``relaygate_endpoint`` and, for tokens, ``gen_ai_token_type``
(``input``/``output``). The rest are relaygate's own, prefixed ``relaygate_``.

**Several worker processes** (``relaygate serve --workers N``) use prometheus-client's
multiprocess mode (https://prometheus.github.io/client_python/multiprocess/): ``serve``
sets ``PROMETHEUS_MULTIPROC_DIR`` before starting the workers, so every value a worker
records is written to a memory-mapped file of its own in that directory, and
``/metrics`` on any worker reads them all: counters and histograms are summed over every
worker that ever ran (a restarted worker's counts stay), and each gauge is combined by
its ``multiprocess_mode`` (``livesum``: the sum over the workers alive; ``livemin``,
``livemax``; ``mostrecent``: the value last set by any worker). Gauges read from a
function (:meth:`Metrics.track`) are written to their files each
:data:`PUBLISH_SECONDS` and before each scrape.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from relaygate.errors import ConfigError

# LLM calls take from milliseconds (cached, embeddings) to minutes (long generations).
_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640,
)  # fmt: skip
_LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
PUBLISH_SECONDS = 1.0
"""How often a worker writes the gauges read from functions, in multiprocess mode."""
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The gateway's metrics; exposed at ``GET /metrics``.

    ``multiprocess_dir`` is the directory of prometheus-client's multiprocess files
    (the ``PROMETHEUS_MULTIPROC_DIR`` this process was started with), for a worker of
    several; None in a process of its own, whose values stay in its memory.
    """

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        """Raises :class:`ConfigError` for a ``multiprocess_dir`` when prometheus-client
        was imported without ``PROMETHEUS_MULTIPROC_DIR`` (its values are then in
        memory, and no other worker could read them)."""
        if multiprocess_dir is not None and values.ValueClass is values.MutexValue:
            raise ConfigError(
                "workers' metrics need PROMETHEUS_MULTIPROC_DIR set before relaygate starts "
                "(relaygate serve --workers N sets it)"
            )
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        self._children: dict[tuple[str, str], ModelMetrics] = {}
        self._tracked: dict[Gauge, Callable[[], float]] = {}
        self.proxy_requests = Counter(
            "relaygate_proxy_requests",
            "Proxied requests by response status class",
            ["status"],
            registry=registry,
        )
        self.requests = Counter(
            "relaygate_requests",
            "Proxied requests by public model name, endpoint and HTTP status",
            ["gen_ai_request_model", "relaygate_endpoint", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "gen_ai_client_operation_duration",
            "Seconds from a proxied request's arrival to the end of its answer",
            ["gen_ai_request_model", "relaygate_endpoint"],
            unit="seconds",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token",
            "Seconds from a streamed request's arrival to the first chunk of its answer",
            ["gen_ai_request_model", "relaygate_endpoint"],
            unit="seconds",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per request, by type (input: prompt, output: completion)",
            ["gen_ai_request_model", "relaygate_endpoint", "gen_ai_token_type"],
            buckets=_TOKEN_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "relaygate_tokens",
            "Tokens used, by type (input: prompt, output: completion)",
            ["gen_ai_request_model", "relaygate_endpoint", "gen_ai_token_type"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "relaygate_upstream_errors",
            "Upstream failures by kind",
            ["kind"],
            registry=registry,
        )
        self.usage_unread = Counter(
            "relaygate_usage_unread_streams",
            "Streams whose usage went uncounted: an event longer than max_event_bytes",
            registry=registry,
        )
        self.in_flight = Gauge(
            "relaygate_proxy_in_flight",
            "Proxied requests in progress",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.snapshot_version = Gauge(
            "relaygate_snapshot_version",
            "Change counter of the loaded snapshot (with workers: the lowest any serves)",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.snapshot_age = Gauge(
            "relaygate_snapshot_age_seconds",
            "Seconds since the loaded snapshot last changed (with workers: the oldest)",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.snapshot_rebuilds = Gauge(
            "relaygate_snapshot_rebuilds",
            "Whole rebuilds of the snapshot since start (the first load included; with "
            "workers: summed over them)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.loop_lag = Histogram(
            "relaygate_event_loop_lag",
            "How late the event loop woke a timer, sampled every 50 ms: the longest time "
            "one step held the loop",
            unit="seconds",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.sync_runs = Counter(
            "relaygate_sync_runs",
            "Model syncs by endpoint and outcome (ok or error)",
            ["relaygate_endpoint", "status"],
            registry=registry,
        )
        self.batch_requests = Counter(
            "relaygate_batch_requests",
            "Batch requests by outcome: completed (a 2xx answer), failed (any other final "
            "outcome), retried (a 429 or 5xx sent again later)",
            ["outcome"],
            registry=self.registry,
        )
        self.batch_queued = Gauge(
            "relaygate_batch_requests_queued",
            "Batch requests waiting to be sent, across every batch (as of this process's "
            "latest look)",
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.batch_running = Gauge(
            "relaygate_batch_requests_running",
            "Batch requests in flight (with workers: summed over them)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.usage_queue = Gauge(
            "relaygate_usage_queue_depth",
            "Usage records waiting to be written",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.usage_written = Counter(
            "relaygate_usage_written", "Usage records written", registry=registry
        )
        self.usage_dropped = Counter(
            "relaygate_usage_dropped",
            "Usage records dropped because the queue was full (database stalled)",
            registry=registry,
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
        budget_labels = ["kind", "id", "name"]
        self.budget_spent = Gauge(
            "relaygate_budget_spent",
            "Spend of a budget in its current period (currency of the prices), as of the "
            "last request settled (by any worker); kind is key, user or group",
            budget_labels,
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.budget_limit = Gauge(
            "relaygate_budget_limit",
            "The limit of a budget (currency of the prices)",
            budget_labels,
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.budget_refused = Counter(
            "relaygate_budget_refused",
            "Requests refused because a budget had not enough left",
            registry=self.registry,
        )
        self.budget_store_errors = Counter(
            "relaygate_budget_store_errors",
            "Budget calls to Redis that failed",
            registry=self.registry,
        )
        self.budget_alerts = Counter(
            "relaygate_budget_alerts",
            "Budget alerts by outcome: sent, failed (after every retry) or dropped",
            ["outcome"],
            registry=self.registry,
        )

    def track(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Have ``gauge`` report what ``read`` returns: read at each scrape in a process
        of its own; written each :data:`PUBLISH_SECONDS` (:meth:`publish`) by a worker."""
        if self.multiprocess_dir is None:
            gauge.set_function(read)
        else:
            self._tracked[gauge] = read

    def publish(self) -> None:
        """Write the tracked gauges' current values (multiprocess mode; else nothing)."""
        for gauge, read in self._tracked.items():
            gauge.set(read())

    def exposition(self) -> bytes:
        """The Prometheus text exposition (content type :data:`CONTENT_TYPE`): this
        process's registry, or every worker's files in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        self.publish()
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    def for_model(self, model: str, endpoint: str) -> ModelMetrics:
        """The per-request metrics of public ``model`` served by ``endpoint``, with
        their labels bound once: prometheus-client's ``labels()`` takes a lock and builds
        keys, which is most of what a metric costs on the request path."""
        children = self._children.get((model, endpoint))
        if children is None:
            children = self._children[(model, endpoint)] = ModelMetrics(self, model, endpoint)
        return children


class ModelMetrics:
    """The metrics of one (public model, endpoint) pair, each series made on its first
    use (prometheus-client exports a series as soon as it exists, zeros included)."""

    __slots__ = ("_counters", "_histograms", "_metrics", "endpoint", "model")

    def __init__(self, metrics: Metrics, model: str, endpoint: str) -> None:
        self._metrics = metrics
        self.model = model
        self.endpoint = endpoint
        self._counters: dict[object, Counter] = {}
        self._histograms: dict[object, Histogram] = {}

    def request(self, status: int) -> Counter:
        """The ``relaygate_requests`` counter for an answer with HTTP ``status``."""
        series = self._counters.get(status)
        if series is None:
            series = self._counters[status] = self._metrics.requests.labels(
                self.model, self.endpoint, str(status)
            )
        return series

    def duration(self) -> Histogram:
        """``gen_ai_client_operation_duration_seconds`` of this pair."""
        return self._histogram("duration", self._metrics.duration)

    def time_to_first_token(self) -> Histogram:
        """``gen_ai_server_time_to_first_token_seconds`` of this pair."""
        return self._histogram("ttft", self._metrics.time_to_first_token)

    def token_usage(self, kind: str) -> Histogram:
        """``gen_ai_client_token_usage`` of this pair for ``kind`` (input or output)."""
        return self._histogram(("usage", kind), self._metrics.token_usage, kind)

    def tokens(self, kind: str) -> Counter:
        """``relaygate_tokens_total`` of this pair for ``kind`` (input or output)."""
        series = self._counters.get(kind)
        if series is None:
            series = self._counters[kind] = self._metrics.tokens.labels(
                self.model, self.endpoint, kind
            )
        return series

    def _histogram(self, name: object, metric: Histogram, *extra: str) -> Histogram:
        series = self._histograms.get(name)
        if series is None:
            series = self._histograms[name] = metric.labels(self.model, self.endpoint, *extra)
        return series
