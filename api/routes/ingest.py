"""``POST /api/ingest``: agents' batches of frames, detections and JPEGs into DuckDB."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import AgentPrincipal, MetricsDep, SettingsDep, WriterDep, secured_router
from api.ingest import (
    BadJpegError,
    IngestTables,
    build_tables,
    check_jpeg,
    jpeg_paths,
    unique_frames,
    write_jpegs,
)
from api.settings import ApiSettings
from api.telemetry import ApiMetrics
from api.writer import IngestWriter
from edgeloop.wire import FrameRecord, IngestAck, IngestBatch

logger = logging.getLogger(__name__)

router = secured_router("/api/ingest", tag="ingest")

_PREPARE_GATE = threading.Semaphore(1)
"""One batch at a time in the pure-Python stage (parse, checks, Arrow build), per process.

That stage holds the GIL throughout, so running several at once only adds switching
(measured with bench/ingest.py: 4 concurrent clients went from ~54k to ~77k detections/s
with the gate); the DuckDB insert of one batch, which releases the GIL, overlaps with the
parse of the next.
"""


@dataclass(frozen=True)
class _Prepared:
    batch: IngestBatch
    frames: list[FrameRecord]
    paths: dict[str, Path]
    tables: IngestTables


def _prepare(body: bytes, settings: ApiSettings, metrics: ApiMetrics) -> _Prepared:
    """Parse the body, check the JPEGs and build the Arrow tables.

    Raises:
        RequestValidationError: malformed batch (pydantic's messages, inputs left out: a
            JSON error's input is the whole, possibly 64 MiB, body).
        HTTPException: 422 naming the frame whose JPEG is corrupt.
    """
    start = time.perf_counter()
    try:
        batch = IngestBatch.model_validate_json(body)
    except ValidationError as exc:
        metrics.ingest_rejected.labels("malformed").inc()
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError(
            [{"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]} for e in errors]
        ) from None
    parsed = time.perf_counter()
    frames, _ = unique_frames(batch)
    try:
        for frame in frames:
            if frame.jpeg is not None:
                check_jpeg(frame.frame_key, frame.jpeg)
    except BadJpegError as exc:
        metrics.ingest_rejected.labels("bad_jpeg").inc()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    paths = jpeg_paths(frames, settings.loop.frames_dir)
    tables = build_tables(
        frames,
        agent_id=batch.agent_id,
        received_at=datetime.now(UTC),
        jpeg_paths=paths,
        uncertainty_low=settings.loop.uncertainty_low,
        uncertainty_high=settings.loop.uncertainty_high,
    )
    metrics.ingest_stage_seconds.labels("parse").observe(parsed - start)
    metrics.ingest_stage_seconds.labels("arrow").observe(time.perf_counter() - parsed)
    return _Prepared(batch=batch, frames=frames, paths=paths, tables=tables)


def _ingest(
    body: bytes, *, settings: ApiSettings, writer: IngestWriter, metrics: ApiMetrics
) -> IngestAck:
    with _PREPARE_GATE:
        prepared = _prepare(body, settings, metrics)
    start = time.perf_counter()
    write_jpegs(prepared.frames, prepared.paths)  # durable before the commit refers to them
    written = time.perf_counter()
    result = writer.write(prepared.tables)
    metrics.ingest_stage_seconds.labels("jpeg").observe(written - start)
    metrics.ingest_stage_seconds.labels("db").observe(time.perf_counter() - written)

    duplicates = len(prepared.batch.frames) - result.accepted
    metrics.ingest_batches.inc()
    metrics.ingest_frames.labels("accepted").inc(result.accepted)
    metrics.ingest_frames.labels("duplicate").inc(duplicates)
    metrics.ingest_detections.inc(result.detections)
    metrics.ingest_queued.inc(result.queued)
    logger.debug(
        "ingest from %s: %s frames stored, %s duplicates, %s detections, %s queued",
        prepared.batch.agent_id,
        result.accepted,
        duplicates,
        result.detections,
        result.queued,
    )
    return IngestAck(
        accepted=result.accepted,
        duplicates=duplicates,
        detections=result.detections,
        queued=result.queued,
    )


@router.post(
    "",
    response_model=IngestAck,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": IngestBatch.model_json_schema()}},
        }
    },
    responses={
        413: {"description": "Body larger than EDGELOOP_API_MAX_BODY_BYTES"},
        422: {"description": "Malformed batch, or a frame's JPEG is corrupt"},
    },
)
async def ingest(
    request: Request,
    _agent: AgentPrincipal,
    settings: SettingsDep,
    writer: WriterDep,
    metrics: MetricsDep,
) -> IngestAck:
    """Store a batch of frames (role ``agent``); idempotent by ``frame_key``.

    Frames already stored, or repeated within the batch, are skipped and counted in
    ``duplicates``. JPEGs are written (fsync'ed) before the DuckDB commit, and frames,
    detections and queue rows land in one transaction (batches arriving together share
    one connection: ``api.writer.IngestWriter``): once acknowledged, durable.
    """
    body = await request.body()
    return await run_in_threadpool(_ingest, body, settings=settings, writer=writer, metrics=metrics)
