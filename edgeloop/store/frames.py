"""The ``frames`` and ``prediction_logs`` tables: what the agents saw and detected.

A frame and its detections are written together, once (``edgeloop.store.ingest``: the
API's ingest, idempotent on ``frame_key``), and never changed after; this module reads
them. Boxes are stored as ``x1, y1, x2, y2`` pixels of the original frame;
``detection_id`` is ``<frame_key>:<index in frame>``; times are TIMESTAMPTZ (UTC).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from edgeloop.store.connection import Connection, fetch_dicts, fetch_scalar, is_postgres
from edgeloop.store.schema import bin_sql

if TYPE_CHECKING:
    import pandas as pd

QUALITY_FEATURES = (
    "brightness",
    "contrast",
    "sharpness",
    "saturation",
    "detection_count",
    "mean_confidence",
)
"""Per-frame columns the drift report tests: the agent's ``FrameQuality`` (brightness,
contrast, sharpness, saturation) plus the frame's detection count and mean confidence."""

CONFIDENCE_BINS = 10
"""Bins of the confidence histogram over [0, 1] (width 0.1)."""


def counts(*, con: Connection) -> tuple[int, int]:
    """``(frames, detections)`` stored."""
    row = con.execute(
        "SELECT (SELECT count(*) FROM frames), (SELECT count(*) FROM prediction_logs)"
    ).fetchall()[0]
    return int(row[0]), int(row[1])


def get_frame(*, con: Connection, frame_key: str) -> dict[str, Any] | None:
    """The ``frames`` row of ``frame_key``, or None."""
    rows = fetch_dicts(con.execute("SELECT * FROM frames WHERE frame_key = ?", [frame_key]))
    return rows[0] if rows else None


def frame_detections(*, con: Connection, frame_key: str) -> list[dict[str, Any]]:
    """A frame's detections in the order the detector produced them (x1..y2 px)."""
    return fetch_dicts(
        con.execute(
            """
            SELECT detection_id, class_id, class_name, confidence, uncertain, x1, y1, x2, y2
            FROM prediction_logs WHERE frame_key = ?
            ORDER BY detection_index
            """,
            [frame_key],
        )
    )


def proposals(*, con: Connection, frame_keys: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The proposal production made for each stored frame of ``frame_keys``: the detections
    the agent logged with the frame, which the labeling page shows as pre-labels.

    Returns:
        ``frame_key -> detections`` in the order the detector produced them, for the frames
        stored in ``frames`` (a frame without detections maps to ``[]``); keys not stored
        are absent. Each detection: ``class_name``, ``confidence`` in [0, 1],
        ``bbox_xyxy`` (x1, y1, x2, y2) px of the original frame, origin top-left, and the
        ``model_version`` that produced it.
    """
    if not frame_keys:
        return {}
    rows = con.execute(
        f"""
        SELECT f.frame_key, p.class_name, p.confidence, p.x1, p.y1, p.x2, p.y2,
               p.model_version
        FROM frames f LEFT JOIN prediction_logs p USING (frame_key)
        WHERE f.frame_key IN ({", ".join("?" * len(frame_keys))})
        ORDER BY f.frame_key, p.detection_index
        """,
        list(frame_keys),
    ).fetchall()
    found: dict[str, list[dict[str, Any]]] = {}
    for frame_key, class_name, confidence, x1, y1, x2, y2, model_version in rows:
        detections = found.setdefault(frame_key, [])
        if class_name is not None:
            detections.append(
                {
                    "class_name": class_name,
                    "confidence": float(confidence),
                    "bbox_xyxy": (float(x1), float(y1), float(x2), float(y2)),
                    "model_version": model_version,
                }
            )
    return found


def detection_class_names(*, con: Connection) -> list[str]:
    """Class names seen in the detections, indexed by class_id (gaps as ``class_<id>``)."""
    pairs = con.execute(
        "SELECT class_id, any_value(class_name) FROM prediction_logs GROUP BY class_id"
    ).fetchall()
    if not pairs:
        return []
    names = {int(class_id): str(name) for class_id, name in pairs}
    return [names.get(i, f"class_{i}") for i in range(max(names) + 1)]


def camera_ingest(*, con: Connection, window_s: float, now: datetime) -> list[dict[str, Any]]:
    """Per camera: frames, detections, frames received in ``(now - window_s, now]``
    (``recent``), mean inference ms, defect rate (share of frames with a detection) and the
    last receive time."""
    return fetch_dicts(
        con.execute(
            """
            SELECT camera_id,
                   count(*) AS frames,
                   sum(detection_count) AS detections,
                   count(*) FILTER (WHERE received_at > ?) AS recent,
                   avg(inference_ms) AS mean_inference_ms,
                   avg(CASE WHEN detection_count > 0 THEN 1.0 ELSE 0.0 END) AS defect_rate,
                   max(received_at) AS last_received_at
            FROM frames GROUP BY camera_id ORDER BY camera_id
            """,
            [now - timedelta(seconds=window_s)],
        )
    )


def confidence_histograms(*, con: Connection) -> dict[str, list[int]]:
    """Per camera, detections per confidence bin (``CONFIDENCE_BINS`` bins over [0, 1])."""
    return ConfidenceHistograms().read(con=con)


BIN_SQL = bin_sql(CONFIDENCE_BINS)
"""A detection's confidence bin (0 .. ``CONFIDENCE_BINS`` - 1, confidence 1.0 in the last)."""


def add_to_bins_sql(source: str) -> str:
    """PostgreSQL: the statement that adds the detections of the table ``source`` to
    ``confidence_bins``, the per-camera histogram kept at ingest (one row per camera and
    bin; ``edgeloop.store.ingest`` runs it in the batch's transaction). Rows are locked in
    key order, so two replicas ingesting one camera wait for each other, never deadlock."""
    return f"""
        INSERT INTO confidence_bins (camera_id, bin, detections)
        SELECT camera_id, {BIN_SQL} AS bin, count(*) FROM {source}
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (camera_id, bin)
        DO UPDATE SET detections = confidence_bins.detections + excluded.detections
        """


class ConfidenceHistograms:
    """Per-camera confidence histograms kept up to date incrementally: each ``read`` adds
    only the detections stored since the previous one (by ``rowid``; ``prediction_logs``
    is append-only, so rowids only grow), instead of scanning every detection.

    One instance per process and database file (the API keeps one on ``app.state``);
    thread-safe.
    """

    def __init__(self) -> None:
        self._through = -1
        self._histograms: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def read(self, *, con: Connection) -> dict[str, list[int]]:
        """Per camera, detections per confidence bin (``CONFIDENCE_BINS`` bins over [0, 1],
        the last bin closed), counting every detection stored so far."""
        if is_postgres(con):
            # Replicas commit out of rowid order, so a rowid watermark would miss rows:
            # ingest keeps the counts in confidence_bins instead (add_to_bins_sql).
            found: dict[str, list[int]] = {}
            for camera_id, bin_index, n in con.execute(
                "SELECT camera_id, bin, detections FROM confidence_bins"
            ).fetchall():
                found.setdefault(camera_id, [0] * CONFIDENCE_BINS)[bin_index] = int(n)
            return found
        with self._lock:
            newest = fetch_scalar(con.execute("SELECT max(rowid) FROM prediction_logs"))
            if newest is None or int(newest) < self._through:  # empty or a new file
                self._through, self._histograms = -1, {}
            if newest is not None and int(newest) > self._through:
                since = _histograms(con, "WHERE rowid > ? AND rowid <= ?", [self._through, newest])
                for camera_id, added in since.items():
                    counts = self._histograms.setdefault(camera_id, [0] * CONFIDENCE_BINS)
                    for bin_index, n in enumerate(added):
                        counts[bin_index] += n
                self._through = int(newest)
            return {camera: list(counts) for camera, counts in self._histograms.items()}


def _histograms(con: Connection, where: str, params: Sequence[Any] = ()) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for camera_id, bin_index, n in con.execute(
        f"""
        SELECT camera_id, {BIN_SQL}, count(*)
        FROM prediction_logs {where}
        GROUP BY 1, 2
        """,
        list(params),
    ).fetchall():
        found.setdefault(camera_id, [0] * CONFIDENCE_BINS)[bin_index] += int(n)
    return found


def camera_summary(*, con: Connection) -> list[dict[str, Any]]:
    """Per camera: frames, detections (sum of per-frame counts), frames with a JPEG, mean
    inference ms (1 decimal), first and last capture time."""
    return fetch_dicts(
        con.execute(
            """
            SELECT camera_id,
                   count(*) AS frames,
                   sum(detection_count) AS detections,
                   count(*) FILTER (WHERE jpeg_path IS NOT NULL) AS frames_with_jpeg,
                   round(avg(inference_ms), 1) AS mean_inference_ms,
                   min(captured_at) AS first_frame_at,
                   max(captured_at) AS last_frame_at
            FROM frames GROUP BY camera_id ORDER BY camera_id
            """
        )
    )


def detection_summary(*, con: Connection) -> list[dict[str, Any]]:
    """Per camera: frames, frames with JPEG, detections, uncertain detections, mean
    confidence, first/last capture and last receive time (ISO 8601 UTC text)."""
    return fetch_dicts(
        con.execute(
            """
            WITH f AS (
                SELECT camera_id, count(*) AS frames,
                       count(jpeg_path) AS frames_with_jpeg,
                       min(captured_at) AS first_captured, max(captured_at) AS last_captured,
                       max(received_at) AS last_received
                FROM frames GROUP BY camera_id
            ), d AS (
                SELECT camera_id, count(*) AS detections,
                       count(*) FILTER (WHERE uncertain) AS uncertain,
                       avg(confidence) AS mean_confidence
                FROM prediction_logs GROUP BY camera_id
            )
            SELECT f.camera_id, f.frames, f.frames_with_jpeg,
                   coalesce(d.detections, 0) AS detections, coalesce(d.uncertain, 0) AS uncertain,
                   d.mean_confidence,
                   strftime(f.first_captured AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') AS first_captured,
                   strftime(f.last_captured AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') AS last_captured,
                   strftime(f.last_received AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') AS last_received
            FROM f LEFT JOIN d USING (camera_id)
            ORDER BY f.camera_id
            """
        )
    )


@dataclass(frozen=True)
class DetectionFilter:
    """Which detections to list; None leaves a criterion out.

    Attributes:
        camera_id: one camera.
        since / until: capture time in ``[since, until)``, timezone-aware.
        uncertain: only detections in (True) or out of (False) the uncertainty band.
        min_confidence / max_confidence: confidence in ``[min, max]`` (inclusive, [0, 1]):
            "confident" is ``min_confidence = uncertainty_high``, at or above the band.
        with_jpeg: only detections whose frame has (True) or lacks (False) a stored JPEG.
    """

    camera_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    uncertain: bool | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    with_jpeg: bool | None = None


def list_detections(
    *, con: Connection, where: DetectionFilter, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Detections joined with their frames, newest capture first, one page; and the count
    over all pages."""
    conditions = ["TRUE"]
    params: list[Any] = []
    for clause, value in (
        ("p.camera_id = ?", where.camera_id),
        ("p.captured_at >= ?", where.since),
        ("p.captured_at < ?", where.until),
        ("p.uncertain = ?", where.uncertain),
        ("p.confidence >= ?", where.min_confidence),
        ("p.confidence <= ?", where.max_confidence),
    ):
        if value is not None:
            conditions.append(clause)
            params.append(value)
    if where.with_jpeg is not None:
        conditions.append(
            ("" if where.with_jpeg else "NOT ")
            + "p.frame_key IN (SELECT frame_key FROM frames WHERE jpeg_path IS NOT NULL)"
        )
    condition = " AND ".join(conditions)
    total = fetch_scalar(
        con.execute(f"SELECT count(*) FROM prediction_logs p WHERE {condition}", params)
    )
    # The page is cut from prediction_logs alone (a top-N over its own columns), then only
    # its rows are joined with their frames: a join before the sort would touch every row.
    rows = fetch_dicts(
        con.execute(
            f"""
            WITH page AS (
                SELECT p.detection_id, p.frame_key, p.camera_id, p.captured_at, p.class_id,
                       p.class_name, p.confidence, p.x1, p.y1, p.x2, p.y2, p.uncertain,
                       p.model_version
                FROM prediction_logs p
                WHERE {condition}
                ORDER BY p.captured_at DESC, p.detection_id
                LIMIT ? OFFSET ?
            )
            SELECT page.detection_id, page.frame_key, page.camera_id, f.frame_index,
                   page.captured_at, f.received_at, page.class_id, page.class_name,
                   page.confidence, page.x1, page.y1, page.x2, page.y2, page.uncertain,
                   page.model_version, f.width, f.height, f.jpeg_path IS NOT NULL AS has_jpeg
            FROM page JOIN frames f USING (frame_key)
            ORDER BY page.captured_at DESC, page.detection_id
            """,
            [*params, limit, offset],
        )
    )
    return rows, int(total or 0)


def quality_features(
    *, con: Connection, features: Sequence[str] = QUALITY_FEATURES, model_version: bool = False
) -> pd.DataFrame:
    """Every frame's ``camera_id``, ``captured_at`` and the named feature columns (and the
    ``model_version`` that produced its detections, when asked), by camera and capture time
    (a pandas DataFrame, for the drift report)."""
    unknown = sorted(set(features) - set(QUALITY_FEATURES))
    if unknown:
        raise ValueError(f"not frame feature columns: {unknown}; known: {QUALITY_FEATURES}")
    columns = [*features, *(["model_version"] if model_version else [])]
    return con.sql(
        f"""
        SELECT camera_id, captured_at, {", ".join(columns)}
        FROM frames ORDER BY camera_id, captured_at
        """
    ).df()


def detections_with_jpeg(*, con: Connection) -> pd.DataFrame:
    """Detections of frames that have a stored JPEG, with the frame's path and size (px),
    by frame and detection (a pandas DataFrame, for cutting crops)."""
    return con.sql(
        """
        SELECT p.detection_id, p.frame_key, p.camera_id, p.class_name, p.confidence,
               p.x1, p.y1, p.x2, p.y2,
               strftime(p.captured_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') AS captured_at,
               f.jpeg_path, f.width, f.height
        FROM prediction_logs p JOIN frames f USING (frame_key)
        WHERE f.jpeg_path IS NOT NULL
        ORDER BY p.frame_key, p.detection_id
        """
    ).df()


def model_history(*, con: Connection, camera_id: str) -> list[dict[str, Any]]:
    """Which model version a camera ran, as contiguous runs of frames by capture time.

    Each row: ``model_version``, ``first_frame_at``, ``last_frame_at`` (capture times,
    UTC), ``frames``; oldest first. A version that came back (a rollback) is a new row.
    """
    return fetch_dicts(
        con.execute(
            """
            WITH f AS (
                SELECT captured_at, model_version,
                       lag(model_version) OVER (ORDER BY captured_at, frame_key) AS previous
                FROM frames WHERE camera_id = ?
            ), runs AS (
                SELECT *, sum(CASE WHEN previous IS DISTINCT FROM model_version THEN 1 ELSE 0 END)
                          OVER (ORDER BY captured_at ROWS UNBOUNDED PRECEDING) AS run
                FROM f
            )
            SELECT model_version, min(captured_at) AS first_frame_at,
                   max(captured_at) AS last_frame_at, count(*) AS frames
            FROM runs GROUP BY run, model_version ORDER BY first_frame_at
            """,
            [camera_id],
        )
    )


def model_at(*, con: Connection, camera_id: str, at: datetime) -> dict[str, Any] | None:
    """The model version on the camera's newest frame captured at or before ``at``
    (timezone-aware): ``model_version``, ``captured_at``, ``frame_key``; None when none."""
    rows = fetch_dicts(
        con.execute(
            """
            SELECT model_version, captured_at, frame_key FROM frames
            WHERE camera_id = ? AND captured_at <= ?
            ORDER BY captured_at DESC, frame_key DESC LIMIT 1
            """,
            [camera_id, at],
        )
    )
    return rows[0] if rows else None


def camera_models(
    *, con: Connection, camera_id: str, model_name: str, at: datetime | None = None
) -> dict[str, Any]:
    """Which model a camera ran, and when: the answer ``edgeloop model-history`` and
    ``GET /api/cameras/{camera_id}/models`` give.

    Args:
        at: the moment asked about; one without a UTC offset is taken as UTC.

    Returns:
        ``at`` (timezone-aware, or None), ``history`` (``model_history``), and with ``at``:
        ``version_at`` and ``last_frame_before_at`` (the camera's newest frame at or before
        ``at``; None when none) and ``production_at`` (the version ``production`` pointed
        at then, from ``model_deployments``; None when unset).
    """
    from edgeloop.store import deployments

    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    ran = model_at(con=con, camera_id=camera_id, at=at) if at is not None else None
    return {
        "at": at,
        "history": model_history(con=con, camera_id=camera_id),
        "version_at": ran["model_version"] if ran else None,
        "last_frame_before_at": ran["captured_at"] if ran else None,
        "production_at": (
            deployments.alias_at(con=con, model_name=model_name, alias="production", at=at)
            if at is not None
            else None
        ),
    }
