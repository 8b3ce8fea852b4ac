"""Read-only aggregate views for the operator's console (``api/console``).

Nothing here writes: these are views over tables other modules own (``frames`` and
``prediction_logs``: ``edgeloop.store.frames``; ``labeling_queue``: ``queue``;
``reviewed_labels``: ``labels``; ``drift_reports``: ``drift``). They live apart so the
console's charts do not grow those modules, and every one is bounded: a time range
(``since``/``until``, timezone-aware UTC) or a row limit, so a refresh never scans more
than the range asked for. Frames are appended in capture order, so DuckDB's per-row-group
min/max (zonemaps) skip the row groups outside a time range (``bench/console.py``
measures them at 1,000,000 detections). On PostgreSQL the windows' counts read the
per-minute rollups ingest keeps (``edgeloop.store.rollups``), exact all the same.

Times come back as TIMESTAMPTZ (``datetime``, UTC) or, for chart series, as Unix seconds
(what uPlot plots); confidences in [0, 1]; inference in ms.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edgeloop.store import drift, frames, queue, rollups
from edgeloop.store.connection import Connection, fetch_dicts, is_postgres, parse_json
from edgeloop.store.schema import ROLLUP_BINS

PRIORITY_BANDS = ((1.0, "high"), (0.5, "medium"), (float("-inf"), "low"))
"""Queue priority bands, highest first: ``priority >= bound``. A pending item's priority is
its max uncertainty score in [0, 1] times the drift boost (``edgeloop.store.queue``), so
"high" (>= 1) are boosted items of drifted cameras."""


def _check_range(since: datetime, until: datetime) -> None:
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be timezone-aware (UTC)")
    if until <= since:
        raise ValueError(f"empty time range: until {until} is not after since {since}")


_CAMERA_LATEST_POSTGRES = """
WITH RECURSIVE cameras AS (
    (SELECT camera_id FROM frames ORDER BY camera_id LIMIT 1)
    UNION ALL
    SELECT (SELECT f.camera_id FROM frames f WHERE f.camera_id > c.camera_id
            ORDER BY f.camera_id LIMIT 1)
    FROM cameras c WHERE c.camera_id IS NOT NULL
)
SELECT c.camera_id, newest.model_version, newest.agent_id, newest.captured_at,
       received.received_at
FROM cameras c CROSS JOIN LATERAL (
    SELECT model_version, agent_id, captured_at FROM frames f
    WHERE f.camera_id = c.camera_id ORDER BY f.captured_at DESC LIMIT 1
) AS newest CROSS JOIN LATERAL (
    SELECT received_at FROM frames f
    WHERE f.camera_id = c.camera_id ORDER BY f.received_at DESC LIMIT 1
) AS received
WHERE c.camera_id IS NOT NULL
ORDER BY c.camera_id
"""


def camera_latest(*, con: Connection) -> list[dict[str, Any]]:
    """Per camera, its newest frame: ``camera_id``, ``model_version``, ``agent_id``,
    ``captured_at``, ``received_at``; by camera.

    Reads one row per camera through ``arg_max`` over ``frames`` (no sort). PostgreSQL
    aggregates no faster than it sorts, so there each camera's newest frame is read from
    the indexes ``frames_camera_time`` and ``frames_camera_received`` (the cameras found
    by a loose index scan: about 1 ms instead of 130-250 ms at 125,000 frames,
    bench/README.md).
    """
    if is_postgres(con):
        return fetch_dicts(con.execute(_CAMERA_LATEST_POSTGRES))
    return fetch_dicts(
        con.execute(
            """
            SELECT camera_id,
                   arg_max(model_version, captured_at) AS model_version,
                   arg_max(agent_id, captured_at) AS agent_id,
                   max(captured_at) AS captured_at,
                   max(received_at) AS received_at
            FROM frames GROUP BY camera_id ORDER BY camera_id
            """
        )
    )


def camera_window(
    *, con: Connection, since: datetime, until: datetime, camera_id: str | None = None
) -> list[dict[str, Any]]:
    """Per camera, frames captured in ``[since, until)``: ``frames``,
    ``frames_with_detection``, ``detections``, ``uncertain`` (detections in the band),
    ``inference_ms_p50`` / ``inference_ms_p95`` (ms, over those frames), and
    ``defect_rate`` (share of frames with a detection, [0, 1]) and ``uncertain_share``
    (uncertain / detections, [0, 1]; None without detections); by camera.

    Counts come from ``rollups`` (exact); the inference percentiles from the frames.

    Raises:
        ValueError: naive or empty range.
    """
    _check_range(since, until)
    frames_sql, frames_params = rollups.frames_source(
        con, since=since, until=until, camera_id=camera_id
    )
    detections_sql, detections_params = rollups.detections_source(
        con, since=since, until=until, camera_id=camera_id
    )
    where = "captured_at >= ? AND captured_at < ?" + (" AND camera_id = ?" if camera_id else "")
    params: list[Any] = [since, until, *([camera_id] if camera_id else [])]
    rows = fetch_dicts(
        con.execute(
            f"""
            WITH f AS (
                SELECT camera_id, sum(frames) AS frames,
                       sum(frames_with_detection) AS frames_with_detection,
                       sum(detections) AS detections
                FROM ({frames_sql}) AS f GROUP BY camera_id
            ), p AS (
                SELECT camera_id, quantile_cont(inference_ms, 0.5) AS inference_ms_p50,
                       quantile_cont(inference_ms, 0.95) AS inference_ms_p95
                FROM frames WHERE {where} GROUP BY camera_id
            ), d AS (
                SELECT camera_id, sum(uncertain) AS uncertain, sum(detections) AS logged
                FROM ({detections_sql}) AS d GROUP BY camera_id
            )
            SELECT f.camera_id, f.frames, f.frames_with_detection, f.detections,
                   p.inference_ms_p50, p.inference_ms_p95,
                   coalesce(d.uncertain, 0) AS uncertain, coalesce(d.logged, 0) AS logged
            FROM f LEFT JOIN p USING (camera_id) LEFT JOIN d USING (camera_id)
            ORDER BY f.camera_id
            """,
            frames_params + params + detections_params,
        )
    )
    for row in rows:
        for count in ("frames", "frames_with_detection", "detections", "uncertain"):
            row[count] = int(row[count] or 0)
        row["defect_rate"] = row["frames_with_detection"] / row["frames"]
        logged = int(row.pop("logged"))
        row["uncertain_share"] = row["uncertain"] / logged if logged else None
    return rows


def detection_series(
    *,
    con: Connection,
    since: datetime,
    until: datetime,
    bucket_s: int,
    camera_id: str | None = None,
) -> list[dict[str, Any]]:
    """Per camera and time bucket of ``bucket_s`` seconds (aligned to the Unix epoch), over
    frames captured in ``[since, until)``: ``t`` (bucket start, Unix s), ``frames``,
    ``frames_with_detection``, ``detections``, ``uncertain``; by camera then ``t``. Buckets
    without frames are absent.

    Raises:
        ValueError: naive or empty range, or ``bucket_s`` not a whole number of minutes
            (the rollups count per minute).
    """
    _check_range(since, until)
    if bucket_s < 60 or bucket_s % 60:
        raise ValueError(f"bucket_s must be a whole number of minutes (s), got {bucket_s}")
    frames_sql, frames_params = rollups.frames_source(
        con, since=since, until=until, camera_id=camera_id
    )
    detections_sql, detections_params = rollups.detections_source(
        con, since=since, until=until, camera_id=camera_id
    )
    bucket = f"(floor(epoch(captured_at) / {int(bucket_s)}) * {int(bucket_s)})::BIGINT"
    rows = fetch_dicts(
        con.execute(
            f"""
            WITH f AS (
                SELECT camera_id, {bucket} AS t, sum(frames) AS frames,
                       sum(frames_with_detection) AS frames_with_detection,
                       sum(detections) AS detections
                FROM ({frames_sql}) AS f GROUP BY camera_id, t
            ), d AS (
                SELECT camera_id, {bucket} AS t, sum(uncertain) AS uncertain
                FROM ({detections_sql}) AS d GROUP BY camera_id, t
            )
            SELECT f.camera_id, f.t, f.frames, f.frames_with_detection, f.detections,
                   coalesce(d.uncertain, 0) AS uncertain
            FROM f LEFT JOIN d USING (camera_id, t) ORDER BY f.camera_id, f.t
            """,
            frames_params + detections_params,
        )
    )
    for row in rows:
        for count in ("t", "frames", "frames_with_detection", "detections", "uncertain"):
            row[count] = int(row[count] or 0)
    return rows


def confidence_histogram(
    *,
    con: Connection,
    since: datetime,
    until: datetime,
    bins: int,
    camera_id: str | None = None,
) -> list[int]:
    """Detections captured in ``[since, until)`` per confidence bin: ``bins`` equal bins over
    [0, 1] (confidence 1.0 falls in the last), folded from the ``schema.ROLLUP_BINS`` bins
    the rollups keep.

    Raises:
        ValueError: naive or empty range, or ``bins`` does not divide ``ROLLUP_BINS``.
    """
    _check_range(since, until)
    if bins < 1 or ROLLUP_BINS % bins:
        raise ValueError(f"bins must divide {ROLLUP_BINS} (the rollups' bins), got {bins}")
    source, params = rollups.detections_source(con, since=since, until=until, camera_id=camera_id)
    counts = [0] * bins
    for index, n in con.execute(
        f"SELECT bin, sum(detections) FROM ({source}) AS d GROUP BY bin", params
    ).fetchall():
        counts[max(int(index), 0) * bins // ROLLUP_BINS] += int(n)
    return counts


def class_mix(
    *, con: Connection, since: datetime, until: datetime, camera_id: str | None = None
) -> list[dict[str, Any]]:
    """Detections captured in ``[since, until)`` per class: ``class_name``, ``detections``,
    ``uncertain``, ``mean_confidence``; most frequent first."""
    _check_range(since, until)
    source, params = rollups.detections_source(con, since=since, until=until, camera_id=camera_id)
    rows = fetch_dicts(
        con.execute(
            f"""
            SELECT class_name, sum(detections) AS detections, sum(uncertain) AS uncertain,
                   sum(confidence_sum) / sum(detections) AS mean_confidence
            FROM ({source}) AS d
            GROUP BY class_name ORDER BY detections DESC, class_name
            """,
            params,
        )
    )
    for row in rows:
        row["detections"], row["uncertain"] = int(row["detections"]), int(row["uncertain"])
    return rows


def drift_history(
    *, con: Connection, since: datetime, camera_id: str | None = None, limit: int = 2000
) -> list[dict[str, Any]]:
    """Drift reports computed at or after ``since`` (newest ``limit``), oldest first:
    ``camera_id``, ``computed_at``, ``drift_share`` ([0, 1]), ``min_p_value``, ``p_values``
    (feature -> KS/chi-square p-value, parsed from JSON), ``drifted`` (as stored),
    ``report_path``, ``model_version`` and ``reference_model_version`` (the version behind
    most frames of the current and the reference window; None in reports before schema 11).

    A view over ``drift_reports`` (owned by ``edgeloop.store.drift``).
    """
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware (UTC)")
    where = "computed_at >= ?" + (" AND camera_id = ?" if camera_id else "")
    params: list[Any] = [since, *([camera_id] if camera_id else [])]
    rows = fetch_dicts(
        con.execute(
            f"""
            SELECT * FROM (
                SELECT camera_id, computed_at, drift_share, min_p_value, p_values, drifted,
                       report_path, model_version, reference_model_version
                FROM drift_reports WHERE {where}
                ORDER BY computed_at DESC LIMIT ?
            ) AS newest ORDER BY computed_at, camera_id
            """,
            [*params, limit],
        )
    )
    for row in rows:
        row["p_values"] = parse_json(row["p_values"]) or {}
    return rows


def queue_by_camera(*, con: Connection) -> list[dict[str, Any]]:
    """Per camera: ``pending``, ``skipped``, ``labeled`` items, ``claimed`` (pending with an
    unexpired claim), pending per priority band (``high``, ``medium``, ``low``, see
    ``PRIORITY_BANDS``), ``top_priority`` and ``oldest_pending_at`` (created_at); by camera.
    """
    (high, _), (medium, _), _ = PRIORITY_BANDS
    return fetch_dicts(
        con.execute(
            f"""
            SELECT camera_id,
                   count(*) FILTER (WHERE status = 'pending') AS pending,
                   count(*) FILTER (WHERE status = 'skipped') AS skipped,
                   count(*) FILTER (WHERE status = 'labeled') AS labeled,
                   count(*) FILTER (WHERE status = 'pending' AND claimed_until > now()) AS claimed,
                   count(*) FILTER (WHERE status = 'pending' AND priority >= {high}) AS high,
                   count(*) FILTER (WHERE status = 'pending' AND priority >= {medium}
                                    AND priority < {high}) AS medium,
                   count(*) FILTER (WHERE status = 'pending' AND priority < {medium}) AS low,
                   max(priority) FILTER (WHERE status = 'pending') AS top_priority,
                   min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending_at
            FROM labeling_queue GROUP BY camera_id ORDER BY camera_id
            """
        )
    )


def oldest_pending(*, con: Connection) -> dict[str, Any] | None:
    """The pending item waiting longest: ``item_id``, ``camera_id``, ``frame_key``,
    ``priority``, ``created_at``; None when nothing is pending."""
    rows = fetch_dicts(
        con.execute(
            """
            SELECT item_id, camera_id, frame_key, priority, created_at FROM labeling_queue
            WHERE status = 'pending' ORDER BY created_at, item_id LIMIT 1
            """
        )
    )
    return rows[0] if rows else None


def labeler_throughput(*, con: Connection, since: datetime) -> list[dict[str, Any]]:
    """Per labeler, labels stored at or after ``since``: ``labeler``, ``labels``,
    ``frames`` (distinct), ``boxes``, ``first_at`` / ``last_at``; most labels first.
    A view over ``reviewed_labels`` (owned by ``edgeloop.store.labels``)."""
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware (UTC)")
    return fetch_dicts(
        con.execute(
            """
            SELECT labeler, count(*) AS labels, count(DISTINCT frame_key) AS frames,
                   sum(box_count)::BIGINT AS boxes,
                   min(labeled_at) AS first_at, max(labeled_at) AS last_at
            FROM reviewed_labels WHERE labeled_at >= ?
            GROUP BY labeler ORDER BY labels DESC, labeler
            """,
            [since],
        )
    )


def detection_page(
    *,
    con: Connection,
    where: frames.DetectionFilter,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """One page of detections, newest capture first (ties by ``detection_id``), each joined
    with its frame; and the count over all pages (``edgeloop.store.frames.list_detections``,
    which cuts the page from ``prediction_logs`` before the join)."""
    return frames.list_detections(con=con, where=where, limit=limit, offset=offset)


def camera_ids(*, con: Connection) -> list[str]:
    """Every camera that sent a frame or a heartbeat, sorted."""
    return [
        str(row[0])
        for row in con.execute(
            """
            SELECT DISTINCT camera_id FROM frames
            UNION SELECT camera_id FROM agent_heartbeats ORDER BY 1
            """
        ).fetchall()
    ]


def per_camera_summary(*, con: Connection) -> list[tuple[Any, ...]]:
    """``(camera_id, pending, labeled or skipped, drifted, top pending priority)`` by camera."""
    return con.execute(
        f"""
        SELECT q.camera_id, count(*) FILTER (WHERE q.status = 'pending') AS pending,
               count(*) FILTER (WHERE q.status <> 'pending') AS done,
               coalesce(bool_or(d.drifted), false) AS drifted,
               max(q.priority) FILTER (WHERE q.status = 'pending') AS top_priority
        FROM labeling_queue q
        LEFT JOIN ({drift.LATEST_PER_CAMERA_SQL}) d ON d.camera_id = q.camera_id
        GROUP BY q.camera_id ORDER BY q.camera_id
        """
    ).fetchall()


def top_pending(*, con: Connection, limit: int) -> list[tuple[Any, ...]]:
    """The first ``limit`` pending items: ``(item_id, camera_id, frame_key, priority,
    uncertain_count, created_at as ISO 8601 UTC text)``."""
    return con.execute(
        f"""
        SELECT item_id, camera_id, frame_key, priority, uncertain_count,
               strftime(created_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')
        FROM labeling_queue WHERE status = 'pending'
        ORDER BY {queue.QUEUE_ORDER} LIMIT ?
        """,
        [limit],
    ).fetchall()
