"""Per-minute rollups of frames and detections, kept at ingest on PostgreSQL, so the
console's windows over hours read thousands of rows instead of every detection.

On PostgreSQL a 24 h window of the console at 1,000,000 detections scanned every row
four times (the per-camera window, the class mix, the series and the confidence
histogram): 2,508 ms p95 for the panel through the API, against 163-185 ms on the DuckDB
file, whose column scans are fast (bench/api_reads_postgres.py, 2-core machine). Ingest
now adds each batch to ``frame_minutes`` (per minute and camera) and
``detection_minutes`` (per minute, camera, class and confidence bin) in its own
transaction, as it does ``confidence_bins`` (``edgeloop.store.frames``). A window reads
the whole minutes inside it from the rollups and the rows of its two partial edge
minutes from the tables, so every figure stays exact.

Both backends run one SQL text for each figure (``edgeloop.store.analytics``): it
aggregates ``frames_source`` / ``detections_source``, a derived table that is the rows
themselves on the DuckDB file and rollups plus edge rows on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from edgeloop.store.connection import Connection, is_postgres
from edgeloop.store.schema import ROLLUP_BINS, bin_sql, rollup_sql

_MINUTE = timedelta(minutes=1)

ROLLUP_TABLES = ("frame_minutes", "detection_minutes")
"""The rollup tables (PostgreSQL only, schema version 7)."""

_FRAME_ROWS = """
    SELECT camera_id, captured_at, 1 AS frames,
           CASE WHEN detection_count > 0 THEN 1 ELSE 0 END AS frames_with_detection,
           detection_count AS detections
    FROM frames WHERE {where}
"""
_DETECTION_ROWS = f"""
    SELECT camera_id, captured_at, class_name, {bin_sql(ROLLUP_BINS)} AS bin,
           1 AS detections, CASE WHEN uncertain THEN 1 ELSE 0 END AS uncertain,
           confidence AS confidence_sum
    FROM prediction_logs WHERE {{where}}
"""

add_sql = rollup_sql
"""The statements that add a batch to the rollups (``schema.rollup_sql``)."""


def _whole_minutes(since: datetime, until: datetime) -> tuple[datetime, datetime] | None:
    """The whole minutes inside ``[since, until)`` as ``[first, end)``, or None when none."""
    first = since.replace(second=0, microsecond=0)
    if first < since:
        first += _MINUTE
    end = until.replace(second=0, microsecond=0)
    return (first, end) if first < end else None


def _source(
    con: Connection,
    rows: str,
    rollup: str,
    since: datetime,
    until: datetime,
    camera_id: str | None,
) -> tuple[str, list[Any]]:
    camera = " AND camera_id = ?" if camera_id else ""
    cameras = [camera_id] if camera_id else []
    whole = _whole_minutes(since, until) if is_postgres(con) else None
    if whole is None:
        return rows.format(where=f"captured_at >= ? AND captured_at < ?{camera}"), [
            since,
            until,
            *cameras,
        ]
    first, end = whole
    edges = (
        f"(captured_at >= ? AND captured_at < ? OR captured_at >= ? AND captured_at < ?){camera}"
    )
    return (
        f"{rollup} WHERE minute >= ? AND minute < ?{camera} UNION ALL " + rows.format(where=edges),
        [first, end, *cameras, since, first, end, until, *cameras],
    )


def frames_source(
    con: Connection, *, since: datetime, until: datetime, camera_id: str | None = None
) -> tuple[str, list[Any]]:
    """A derived table of the frames captured in ``[since, until)`` (of ``camera_id``
    alone when given), and its parameters: columns ``camera_id``, ``captured_at``
    (TIMESTAMPTZ: a frame's capture time, or the start of a rollup row's minute),
    ``frames``, ``frames_with_detection`` and ``detections``, to be summed. Use as
    ``FROM (<sql>) AS f``; ``since``/``until`` are timezone-aware (``analytics`` checks)."""
    return _source(
        con,
        _FRAME_ROWS,
        "SELECT camera_id, minute AS captured_at, frames, frames_with_detection, detections "
        "FROM frame_minutes",
        since,
        until,
        camera_id,
    )


def detections_source(
    con: Connection, *, since: datetime, until: datetime, camera_id: str | None = None
) -> tuple[str, list[Any]]:
    """A derived table of the detections captured in ``[since, until)`` (of ``camera_id``
    alone when given), and its parameters: columns ``camera_id``, ``captured_at`` (as in
    ``frames_source``), ``class_name``, ``bin`` (confidence bin of ``schema.ROLLUP_BINS``), and
    ``detections``, ``uncertain`` and ``confidence_sum``, to be summed."""
    return _source(
        con,
        _DETECTION_ROWS,
        "SELECT camera_id, minute AS captured_at, class_name, bin, detections, uncertain, "
        "confidence_sum FROM detection_minutes",
        since,
        until,
        camera_id,
    )
