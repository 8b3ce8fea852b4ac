"""The FastAPI app factory: ``uvicorn api.main:create_app --factory``.

Nothing is created at import time: settings, tokens, the store and the registry client
are made by ``create_app`` (the registry client lazily, on first use).
"""

from __future__ import annotations

import gc
import logging
import math
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from api import console, openapi
from api.auth import load_principals
from api.ingest import build_tables
from api.middleware import BodySizeLimitMiddleware, NulInUrlMiddleware
from api.model_registry import ModelRegistry
from api.retrain_push import RetrainPush
from api.routes import (
    agents,
    alerts,
    browse,
    cameras,
    classes,
    frames,
    health,
    ingest,
    inspection_logs,
    labeling_queue,
    metrics,
    models,
    prediction_batches,
    reports,
    retraining,
    review,
    search,
    tags,
    thumbnails,
)
from api.settings import ApiSettings, get_settings
from api.telemetry import ApiMetrics
from api.writer import GIL_GATE, IngestWriter
from edgeloop.store import AnyStore, StoreUnavailableError
from edgeloop.store.connection import unavailable_errors
from edgeloop.store.frames import ConfidenceHistograms
from edgeloop.wire import Detection, FrameQuality, FrameRecord

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
WARM_UP_TIMEOUT_S = 30.0
GC_THRESHOLD = (50_000, 20, 10)
"""Python's GC thresholds while the API runs (default (700, 10, 10)).

Parsing one 10,000-detection ingest batch allocates ~60,000 short-lived objects; with the
default threshold the young generation is collected ~80 times per batch, a quarter of the
parse time (``bench/ingest.py``: 34 -> 26 ms per batch). Cycles are still collected.
"""


def _version() -> str:
    try:
        return version("edgeloop")
    except PackageNotFoundError:
        return "0+unknown"


_WARM_UP_FRAME = FrameRecord(
    frame_key="warm-up:0",
    camera_id="warm-up",
    frame_index=0,
    captured_at=datetime(2026, 1, 1, tzinfo=UTC),
    width=64,
    height=64,
    quality=FrameQuality(brightness=0, contrast=0, sharpness=0, saturation=0),
    inference_ms=0,
    model_version="0",
    detections=[
        Detection(
            bbox_xyxy=(1, 1, 9, 9), class_id=0, class_name="x", confidence=0.5, uncertain=True
        )
    ],
)
"""A frame built into Arrow tables (never stored) at start-up, so the first batch does not
pay for initialising Arrow's compute kernels."""


def _warm_up(store: AnyStore) -> None:
    """Migrate the schema and initialise Arrow's compute kernels before the first request."""
    with store.connect():
        pass
    build_tables(
        [_WARM_UP_FRAME],
        agent_id="warm-up",
        received_at=datetime.now(UTC),
        jpeg_paths={},
        uncertainty_low=0.4,
        uncertainty_high=0.7,
    )


def _warm_then_freeze(registry: ModelRegistry, connect: bool) -> None:
    """Import mlflow (and open the registry), then move every object alive so far out of
    the garbage collector's reach.

    ``gc.freeze()`` (Python's gc docs: call it once start-up is done) keeps the collector
    from walking the ~350,000 long-lived objects of the imported modules and the MLflow
    client on every full collection: without it, one ingest parse in two paid a 0.1-0.2 s
    collection (measured with ``gc.callbacks``).
    """
    registry.warm(connect=connect)
    gc.freeze()


async def _store_locked(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±Infinity) as its text: JSON has no
    such numbers, and a 422 that echoes one back must still be valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for a request that failed validation, also when the offending input
    is a NaN or an Infinity (its default handler answers 500 then)."""
    assert isinstance(exc, RequestValidationError)
    detail = _json_safe(jsonable_encoder(exc.errors()))
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the API: routers, middlewares, per-app state, and the labeling page at ``/``.

    Args:
        settings: the API settings; default ``api.settings.get_settings()`` (the environment).

    Raises:
        ValueError: the tokens file is malformed or no token is configured.
    """
    settings = settings or get_settings()
    store = settings.loop.store(
        linger_s=settings.store_linger_s, max_hold_s=settings.store_max_hold_s
    )
    registry = ModelRegistry(settings.loop)
    api_metrics = ApiMetrics()
    writer = IngestWriter(
        store, observe_group=api_metrics.ingest_group_batches.observe, gate=GIL_GATE
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        gc_threshold = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLD)
        await run_in_threadpool(_warm_up, store)
        # mlflow takes seconds to import and a fresh registry store seconds to open: do it
        # before serving, but never wait more than WARM_UP_TIMEOUT_S for a slow registry.
        warm_up = threading.Thread(
            target=_warm_then_freeze,
            args=(registry, settings.warm_registry),
            name="registry-warm-up",
            daemon=True,
        )
        warm_up.start()
        await run_in_threadpool(warm_up.join, WARM_UP_TIMEOUT_S)
        if warm_up.is_alive():
            logger.warning(
                "MLflow registry %s still warming up after %s s; serving anyway",
                settings.loop.tracking_uri,
                WARM_UP_TIMEOUT_S,
            )
        logger.info(
            "edgeloop API ready: store %s, MLflow %s, Dagster %s",
            store.location,
            settings.loop.tracking_uri,
            settings.dagster_url,
        )
        yield
        await run_in_threadpool(store.close)
        search_index = getattr(_app.state, "search_index", None)
        if search_index is not None:  # release the open vector-index shard's lock
            await run_in_threadpool(search_index.close)
        gc.unfreeze()
        gc.set_threshold(*gc_threshold)

    app = FastAPI(
        title="edgeloop",
        version=_version(),
        summary="Ingest, labeling queue, models and retraining of the edgeloop active-learning loop.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.writer = writer
    app.state.registry = registry
    app.state.metrics = api_metrics
    app.state.histograms = ConfidenceHistograms()
    app.state.principals = load_principals(settings)
    app.state.retrain_push = RetrainPush(settings, store)

    app.add_exception_handler(StoreUnavailableError, _store_locked)
    for error in unavailable_errors():  # a PostgreSQL server that went away mid-request
        app.add_exception_handler(error, _store_locked)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(NulInUrlMiddleware)
    # Instrumented last = outermost: latency includes the 413s of the size limit.
    api_metrics.instrument(app)

    routers = [
        health.router,
        ingest.router,
        metrics.router,
        metrics.prometheus_router,
        models.router,
        models.status_router,
        inspection_logs.router,
        labeling_queue.router,
        review.router,
        retraining.router,
        frames.router,
        reports.router,
        search.router,
        cameras.router,
        agents.router,
        classes.router,
        browse.router,
        tags.router,
        thumbnails.router,
        prediction_batches.router,
        alerts.router,
        console.router,
        console.fragments,
        console.data_router,
    ]
    for router in routers:
        app.include_router(router)
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="labeling-page")
    openapi.install(app)
    return app
