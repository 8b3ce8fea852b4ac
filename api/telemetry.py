"""Prometheus instruments of one app, exposed at ``/metrics``.

Each app gets its own ``CollectorRegistry`` (several apps in one process, as in tests,
do not collide on the global registry).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    """The API's counters and histograms (names follow Prometheus' conventions)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "edgeloop_http_request_duration_seconds",
            "HTTP request latency, s, by method, route template and status code.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.ingest_batches = Counter(
            "edgeloop_ingest_batches",
            "Ingest batches acknowledged.",
            registry=self.registry,
        )
        self.ingest_frames = Counter(
            "edgeloop_ingest_frames",
            "Frames received by /api/ingest, by result (accepted or duplicate).",
            ["result"],
            registry=self.registry,
        )
        self.ingest_detections = Counter(
            "edgeloop_ingest_detections",
            "Detections stored by /api/ingest.",
            registry=self.registry,
        )
        self.ingest_queued = Counter(
            "edgeloop_ingest_queued",
            "Frames added to the labeling queue by /api/ingest.",
            registry=self.registry,
        )
        self.ingest_rejected = Counter(
            "edgeloop_ingest_rejected",
            "Ingest batches rejected after reading, by reason (malformed, bad_jpeg).",
            ["reason"],
            registry=self.registry,
        )
        self.ingest_group_batches = Histogram(
            "edgeloop_ingest_group_batches",
            "Batches written through one DuckDB connection (group commit).",
            buckets=(1, 2, 3, 4, 6, 8, 16),
            registry=self.registry,
        )
        self.ingest_stage_seconds = Histogram(
            "edgeloop_ingest_stage_duration_seconds",
            "Time spent per ingest stage, s: parse, arrow, jpeg, db.",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
