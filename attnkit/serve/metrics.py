"""The service's Prometheus metrics (``GET /metrics``), in a registry of its own so two
services in one process (tests) do not share counters."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Requests and errors per endpoint, model and status; request latency; micro-batch sizes;
    queue depth per model; model swaps."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("attnkit_requests", "HTTP requests answered", ["endpoint", "model", "status"], registry=r)
        self.errors = Counter("attnkit_errors", "HTTP requests answered with a 4xx or 5xx status",
                              ["endpoint", "model", "status"], registry=r)
        self.latency = Histogram("attnkit_request_seconds", "Time from request to response", ["endpoint", "model"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("attnkit_batch_size", "Texts per micro-batch run by the model", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("attnkit_queue_depth", "Texts waiting for a micro-batch", ["model"], registry=r)
        self.swaps = Counter("attnkit_model_swaps", "Models replaced while serving", ["model"], registry=r)

    def observe(self, endpoint: str, model: str, status: int, seconds: float) -> None:
        """One answered request."""
        self.requests.labels(endpoint, model, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint, model, str(status)).inc()
        self.latency.labels(endpoint, model).observe(seconds)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
