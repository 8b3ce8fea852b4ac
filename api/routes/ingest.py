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

from api.auth import Principal
from api.deps import AgentPrincipal, MetricsDep, SettingsDep, WriterDep, secured_router
from api.ingest import (
    BadJpegError,
    IngestTables,
    build_tables,
    check_jpeg,
    jpeg_paths,
    remove_jpegs,
    unique_frames,
    without_frames,
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


def _prepare(
    body: bytes, settings: ApiSettings, metrics: ApiMetrics, agent: Principal
) -> _Prepared:
    """Parse the body, check the JPEGs and build the Arrow tables.

    Raises:
        RequestValidationError: malformed batch (pydantic's messages, inputs left out: a
            JSON error's input is the whole, possibly 64 MiB, body).
        HTTPException: 422 naming the frame whose JPEG is corrupt; 403 naming a camera the
            token may not send for (the whole batch is refused: a misconfigured agent).
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
    refused = sorted({f.camera_id for f in batch.frames if not agent.may_send(f.camera_id)})
    if refused:
        metrics.ingest_rejected.labels("camera_not_allowed").inc()
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"token {agent.name!r} may not send frames for camera(s) {', '.join(refused)}; "
            "its cameras are set with `edgeloop token create --camera`",
        )
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
    body: bytes,
    *,
    settings: ApiSettings,
    writer: IngestWriter,
    metrics: ApiMetrics,
    agent: Principal,
) -> IngestAck:
    with _PREPARE_GATE:
        prepared = _prepare(body, settings, metrics, agent)
    start = time.perf_counter()
    # Durable before the commit refers to them; never replacing a stored JPEG.
    jpegs = write_jpegs(prepared.frames, prepared.paths)
    written = time.perf_counter()
    try:
        result = writer.write(without_frames(prepared.tables, jpegs.conflicts))
    except BaseException:
        remove_jpegs(jpegs.created, prepared.paths)
        raise
    remove_jpegs(jpegs.created.intersection(result.skipped), prepared.paths)
    metrics.ingest_stage_seconds.labels("jpeg").observe(written - start)
    metrics.ingest_stage_seconds.labels("db").observe(time.perf_counter() - written)

    conflicts = len(jpegs.conflicts) + len(result.conflicts)
    if conflicts:
        logger.warning(
            "ingest from %s: %s frames refused, their frame_key is stored under another "
            "camera or with another JPEG: %s",
            prepared.batch.agent_id,
            conflicts,
            ", ".join(sorted(jpegs.conflicts.union(result.conflicts))[:5]),
        )
    duplicates = len(prepared.batch.frames) - result.accepted - conflicts
    metrics.ingest_batches.inc()
    metrics.ingest_frames.labels("accepted").inc(result.accepted)
    metrics.ingest_frames.labels("duplicate").inc(duplicates)
    metrics.ingest_frames.labels("conflict").inc(conflicts)
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
        conflicts=conflicts,
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
        403: {"description": "The token may not send frames for a camera of the batch"},
        413: {"description": "Body larger than EDGELOOP_API_MAX_BODY_BYTES"},
        422: {"description": "Malformed batch, or a frame's JPEG is corrupt"},
    },
)
async def ingest(
    request: Request,
    agent: AgentPrincipal,
    settings: SettingsDep,
    writer: WriterDep,
    metrics: MetricsDep,
) -> IngestAck:
    """Store a batch of frames (role ``agent``); idempotent by ``frame_key``.

    Frames already stored, or repeated within the batch, are skipped and counted in
    ``duplicates``; a stored frame is never changed. A frame whose key is stored under
    another camera, or with a different JPEG, is refused and counted in ``conflicts``. JPEGs are written (fsync'ed) before the DuckDB commit, and frames,
    detections and queue rows land in one transaction (batches arriving together share
    one connection: ``api.writer.IngestWriter``): once acknowledged, durable.
    """
    body = await request.body()
    return await run_in_threadpool(
        _ingest, body, settings=settings, writer=writer, metrics=metrics, agent=agent
    )
