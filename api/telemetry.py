"""Prometheus instruments of one app, exposed at ``/metrics``.

Requests are timed by prometheus-fastapi-instrumentator's ASGI middleware
(``ApiMetrics.instrument``); the ingest route feeds the loop's own counters and
histograms. Each app gets its own ``CollectorRegistry``, which the instrumentator writes
into too, so several apps in one process (as in tests) do not collide on the global one.
"""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.metrics import Info

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
GROUP_BUCKETS = (1, 2, 3, 4, 6, 8, 16)
"""Buckets of ``edgeloop_ingest_group_batches``: ``api.writer.IngestWriter`` groups at most 8."""

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods recorded as such; any other is recorded as ``other`` (bounded label values)."""


class ApiMetrics:
    """The API's counters and histograms (names follow Prometheus' conventions)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        counter = partial(Counter, registry=self.registry)
        histogram = partial(Histogram, registry=self.registry)
        self.request_seconds = histogram(
            "edgeloop_http_request_duration_seconds",
            "HTTP request latency, s, by method, route template and status code.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS_S,
        )
        self.ingest_batches = counter("edgeloop_ingest_batches", "Ingest batches acknowledged.")
        self.ingest_frames = counter(
            "edgeloop_ingest_frames",
            "Frames received by /api/ingest, by result (accepted, duplicate or conflict).",
            ["result"],
        )
        self.ingest_detections = counter(
            "edgeloop_ingest_detections", "Detections stored by /api/ingest."
        )
        self.ingest_queued = counter(
            "edgeloop_ingest_queued", "Frames added to the labeling queue by /api/ingest."
        )
        self.ingest_rejected = counter(
            "edgeloop_ingest_rejected",
            "Ingest batches rejected after reading, by reason (malformed, bad_jpeg).",
            ["reason"],
        )
        self.ingest_group_batches = histogram(
            "edgeloop_ingest_group_batches",
            "Batches written through one DuckDB connection (group commit).",
            buckets=GROUP_BUCKETS,
        )
        self.ingest_stage_seconds = histogram(
            "edgeloop_ingest_stage_duration_seconds",
            "Time spent per ingest stage, s: parse, arrow, jpeg, db.",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
        )

    def instrument(self, app: FastAPI) -> None:
        """Time every HTTP request of ``app`` into ``edgeloop_http_request_duration_seconds``.

        prometheus-fastapi-instrumentator's middleware labels a request with its route
        template (``/api/labeling-queue/{item_id}``), never the raw path, so cardinality
        stays bounded: unmatched paths and the static labeling page are ``none``. Status
        codes are kept exact (``413``, not ``4xx``). Call it after adding the other
        middlewares: the last added is the outermost, so the latency includes their answers
        (the 413s of the body-size limit).
        """
        instrumentator = Instrumentator(should_group_status_codes=False, registry=self.registry)
        instrumentator.add(self._observe_request).instrument(app)

    def _observe_request(self, info: Info) -> None:
        method = info.method if info.method in HTTP_METHODS else "other"
        self.request_seconds.labels(method, info.modified_handler, info.modified_status).observe(
            info.modified_duration
        )
