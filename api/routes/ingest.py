"""``POST /api/ingest``: agents' batches of frames, detections and JPEGs into DuckDB."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.deps import AgentPrincipal, MetricsDep, SettingsDep, WriterDep, secured_router
from api.ingest import batch_columns, jpeg_keys
from api.jpegs import BadJpegError, check_jpeg, remove_jpegs, write_jpegs
from api.settings import ApiSettings
from api.telemetry import ApiMetrics
from api.writer import GIL_GATE, IngestWriter
from edgeloop.objects import ObjectStoreUnavailableError
from edgeloop.store.batches import (
    BatchColumns,
    IngestTables,
    tables_from_columns,
    without_frames,
)
from edgeloop.wire import (
    MSGPACK_MEDIA_TYPE,
    MSGPACK_MEDIA_TYPES,
    IngestAck,
    IngestBatch,
    IngestBatchColumnar,
    parse_ingest_batch,
)

logger = logging.getLogger(__name__)

router = secured_router("/api/ingest", tag="ingest")


@dataclass(frozen=True)
class _Prepared:
    columns: BatchColumns
    jpegs: dict[str, bytes]
    keys: dict[str, str]
    tables: IngestTables


def _prepare(
    body: bytes, media_type: str, settings: ApiSettings, metrics: ApiMetrics, agent: Principal
) -> _Prepared:
    """Parse the body (any wire version, see ``edgeloop.wire.parse_ingest_batch``), check
    the JPEGs and build the Arrow tables.

    Raises:
        RequestValidationError: malformed batch (pydantic's messages, inputs left out: a
            JSON error's input is the whole, possibly 64 MiB, body).
        HTTPException: 422 naming the frame whose JPEG is corrupt; 403 naming a camera the
            token may not send for (the whole batch is refused: a misconfigured agent).
    """
    start = time.perf_counter()
    try:
        batch = parse_ingest_batch(body, media_type)
    except ValidationError as exc:
        metrics.ingest_rejected.labels("malformed").inc()
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError(
            [{"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]} for e in errors]
        ) from None
    parsed = time.perf_counter()
    cameras = (
        [f.camera_id for f in batch.frames] if isinstance(batch, IngestBatch) else batch.camera_id
    )
    refused = sorted({c for c in cameras if not agent.may_send(c)})
    if refused:
        metrics.ingest_rejected.labels("camera_not_allowed").inc()
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"token {agent.name!r} may not send frames for camera(s) {', '.join(refused)}; "
            "its cameras are set with `edgeloop token create --camera`",
        )
    columns = batch_columns(batch)
    jpegs = columns.jpegs()
    try:
        for key, jpeg in jpegs.items():
            check_jpeg(key, jpeg)
    except BadJpegError as exc:
        metrics.ingest_rejected.labels("bad_jpeg").inc()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    keys = jpeg_keys(columns)
    tables = tables_from_columns(
        columns,
        received_at=datetime.now(UTC),
        jpeg_paths=keys,
        uncertainty_low=settings.loop.uncertainty_low,
        uncertainty_high=settings.loop.uncertainty_high,
    )
    metrics.ingest_stage_seconds.labels("parse").observe(parsed - start)
    metrics.ingest_stage_seconds.labels("arrow").observe(time.perf_counter() - parsed)
    return _Prepared(columns=columns, jpegs=jpegs, keys=keys, tables=tables)


def _ingest(
    body: bytes,
    media_type: str,
    *,
    settings: ApiSettings,
    writer: IngestWriter,
    metrics: ApiMetrics,
    agent: Principal,
) -> IngestAck:
    # Version 3's preparation is short calls: it runs beside another batch's write.
    gate = contextlib.nullcontext() if media_type in MSGPACK_MEDIA_TYPES else GIL_GATE
    with gate:
        prepared = _prepare(body, media_type, settings, metrics, agent)
    start = time.perf_counter()
    # Durable before the commit refers to them; never replacing a stored JPEG.
    objects = settings.loop.objects()
    try:
        jpegs = write_jpegs(objects, prepared.jpegs, prepared.keys)
    except ObjectStoreUnavailableError as exc:
        with contextlib.suppress(ObjectStoreUnavailableError):
            remove_jpegs(objects, exc.created, prepared.keys)  # those this call created
        metrics.ingest_rejected.labels("object_store").inc()
        logger.warning("ingest refused, frame JPEGs could not be stored: %s", exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"the frame JPEGs could not be stored ({exc}); nothing of this batch "
            "was stored, send it again later",
        ) from None
    written = time.perf_counter()
    try:
        result = writer.write(without_frames(prepared.tables, jpegs.conflicts))
    except BaseException:
        with contextlib.suppress(ObjectStoreUnavailableError):
            remove_jpegs(objects, jpegs.created, prepared.keys)
        raise
    with contextlib.suppress(ObjectStoreUnavailableError):  # an orphan JPEG harms nothing
        remove_jpegs(objects, jpegs.created.intersection(result.skipped), prepared.keys)
    metrics.ingest_stage_seconds.labels("jpeg").observe(written - start)
    metrics.ingest_stage_seconds.labels("db").observe(time.perf_counter() - written)

    conflicts = len(jpegs.conflicts) + len(result.conflicts)
    if conflicts:
        logger.warning(
            "ingest from %s: %s frames refused, their frame_key is stored under another "
            "camera or with another JPEG: %s",
            prepared.columns.agent_id,
            conflicts,
            ", ".join(sorted(jpegs.conflicts.union(result.conflicts))[:5]),
        )
    duplicates = prepared.columns.sent_frames - result.accepted - conflicts
    metrics.ingest_batches.inc()
    metrics.ingest_frames.labels("accepted").inc(result.accepted)
    metrics.ingest_frames.labels("duplicate").inc(duplicates)
    metrics.ingest_frames.labels("conflict").inc(conflicts)
    metrics.ingest_detections.inc(result.detections)
    metrics.ingest_queued.inc(result.queued)
    logger.debug(
        "ingest from %s: %s frames stored, %s duplicates, %s detections, %s queued",
        prepared.columns.agent_id,
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


def _body_schema() -> dict[str, Any]:
    """The JSON body's schema: ``IngestBatch`` (version 1) or ``IngestBatchColumnar``
    (version 2), told apart by ``wire_version`` (the ``$defs`` are moved to the document's
    components by ``api.openapi``). Version 3 is MessagePack, documented by its own media type."""
    schema = TypeAdapter(IngestBatch | IngestBatchColumnar).json_schema()
    # A version-1 batch never has wire_version "2", so exactly one of them matches.
    schema["oneOf"] = schema.pop("anyOf")
    schema["description"] = (
        'A batch of frames: version 1 (IngestBatch, wire_version "1" or absent, one object '
        'per frame and detection) or version 2 (IngestBatchColumnar, wire_version "2", '
        "parallel arrays; faster to parse)."
    )
    return schema


@router.post(
    "",
    response_model=IngestAck,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _body_schema()},
                MSGPACK_MEDIA_TYPE: {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": (
                            'Wire version 3 (IngestBatchBinary, wire_version "3"): version '
                            "2's batch as one MessagePack map, numbers as little-endian typed "
                            "bytes, JPEGs as raw bytes; the layout is in edgeloop.wire.binary."
                        ),
                    }
                },
            },
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

    The body is a batch of any wire version. ``Content-Type: application/msgpack``: version
    3 (``IngestBatchBinary``, what agents send: version 2 in MessagePack, numbers as typed
    bytes, JPEGs unencoded). JSON, told apart by its ``wire_version``: ``"1"`` (or
    absent), one object per frame and per detection (``IngestBatch``); ``"2"``, parallel
    arrays (``IngestBatchColumnar``). All store the same rows and get the same answer.

    Frames already stored, or repeated within the batch, are skipped and counted in
    ``duplicates``; a stored frame is never changed. A frame whose key is stored under
    another camera, or with a different JPEG, is refused and counted in ``conflicts``.
    JPEGs are written (fsync'ed) before the DuckDB commit, and frames,
    detections and queue rows land in one transaction (batches arriving together are
    written together: ``api.writer.IngestWriter``): once acknowledged, durable.
    """
    body = await request.body()
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return await run_in_threadpool(
        _ingest, body, media_type, settings=settings, writer=writer, metrics=metrics, agent=agent
    )
