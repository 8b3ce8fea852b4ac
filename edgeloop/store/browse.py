"""Reads of the dataset browser: detections filtered on every axis at once, and frames or
detections fetched by id with everything known about them.

Reads only: ``frames`` and ``prediction_logs`` (``edgeloop.store.frames``),
``labeling_queue`` (``edgeloop.store.queue``: a frame's state), ``tags``
(``edgeloop.store.tags``), ``reviewed_labels`` (the held-out split) and
``dataset_frames`` (``edgeloop.store.dataset_frames``: a dataset version's frames). Boxes
are xyxy px of the original frame; times are timezone-aware UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from edgeloop.store import dataset_frames, tags
from edgeloop.store.connection import Connection, fetch_dicts, fetch_scalar, read_beside

State = Literal["labeled", "queued", "unlabeled"]
Split = Literal["train", "val"]
STATE_OF_STATUS = {"labeled": "labeled", "pending": "queued", "skipped": "queued"}
"""A frame's browser state from its queue item's status; a frame never queued is
``unlabeled``."""


@dataclass(frozen=True)
class BrowseFilter:
    """Which detections to show; None leaves a criterion out; all given ones combine (AND).

    Attributes:
        camera_id: one camera.
        since / until: capture time in ``[since, until)``, timezone-aware.
        class_name: the detector's class.
        tag: a tag (``edgeloop.store.tags.normalise``d) on the detection or on its frame.
        model_version: the model version that produced the detection.
        min_confidence / max_confidence: confidence in ``[min, max]`` ([0, 1], inclusive).
        uncertain: in (True) or out of (False) the uncertainty band the agent applied.
        state: the frame is ``labeled``, ``queued`` (pending or skipped in the labeling
            queue) or ``unlabeled`` (never queued).
        split: the frame is labeled and in the ``train`` or held-out ``val`` split
            (``edgeloop.datasets.frames.split_for``).
        dataset_version: the frame is in this dataset version (``v<N>``, as recorded by
            the ``training_dataset`` asset in ``edgeloop.store.dataset_frames``).
        with_jpeg: only detections whose frame has a stored JPEG.
        detection_ids: only these detections (a similarity search's hits).
    """

    camera_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    class_name: str | None = None
    tag: str | None = None
    model_version: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    uncertain: bool | None = None
    state: State | None = None
    split: Split | None = None
    dataset_version: str | None = None
    with_jpeg: bool | None = None
    detection_ids: tuple[str, ...] | None = None


def _split_keys(con: Connection, split: Split) -> list[str]:
    """Labeled frames in ``split`` (the split is a hash of the key, computed here)."""
    from edgeloop.datasets.frames import split_for

    keys = [
        str(r[0]) for r in con.execute("SELECT DISTINCT frame_key FROM reviewed_labels").fetchall()
    ]
    return [k for k in keys if split_for(k) == split] or [""]


_COMPARISONS = (
    ("camera_id", "p.camera_id = ?"),
    ("since", "p.captured_at >= ?"),
    ("until", "p.captured_at < ?"),
    ("class_name", "p.class_name = ?"),
    ("model_version", "p.model_version = ?"),
    ("min_confidence", "p.confidence >= ?"),
    ("max_confidence", "p.confidence <= ?"),
    ("uncertain", "p.uncertain = ?"),
)
"""``BrowseFilter`` field -> its condition on ``prediction_logs p`` (one parameter)."""


def where_sql(con: Connection, where: BrowseFilter) -> tuple[str, list[Any]]:
    """The SQL condition (on ``prediction_logs p``) and its parameters for ``where``."""
    conditions = ["TRUE"]
    params: list[Any] = []
    for field, clause in _COMPARISONS:
        value = getattr(where, field)
        if value is not None:
            conditions.append(clause)
            params.append(value)
    if where.tag is not None:
        # First a semi-join on the frames the tag touches (tags carry their frame's key),
        # then which of their detections it is on: without the first, PostgreSQL tests the
        # OR of two subqueries on every detection (260 ms a page at 1M detections), and a
        # correlated EXISTS costs DuckDB 290 ms (bench/batch_fetch.py).
        conditions.append(
            "p.frame_key IN (SELECT frame_key FROM tags WHERE tag = ?) "
            "AND (p.frame_key IN (SELECT target_id FROM tags WHERE target_kind = 'frame' "
            "AND tag = ?) OR p.detection_id IN (SELECT target_id FROM tags "
            "WHERE target_kind = 'detection' AND tag = ?))"
        )
        params += [where.tag] * 3
    if where.state == "labeled":
        conditions.append(
            "p.frame_key IN (SELECT frame_key FROM labeling_queue WHERE status = 'labeled')"
        )
    elif where.state == "queued":
        conditions.append(
            "p.frame_key IN (SELECT frame_key FROM labeling_queue WHERE status <> 'labeled')"
        )
    elif where.state == "unlabeled":
        # The never-queued frames first (an anti-join of frames and the queue, ~6.5k of
        # 125k frames in bench/batch_fetch.py), then their detections through the
        # frame_key index. A NOT IN on the detections themselves costs PostgreSQL a scan of
        # all of them with a hashed subplan: 230 ms to count 6,070 matches of 1M (EXPLAIN
        # ANALYZE), 60 ms this way; DuckDB takes 25 ms either way. The frames-first NOT IN
        # makes PostgreSQL merge-join the whole detection index (380 ms).
        conditions.append(
            "p.frame_key IN (SELECT f.frame_key FROM frames f WHERE NOT EXISTS "
            "(SELECT 1 FROM labeling_queue q WHERE q.frame_key = f.frame_key))"
        )
    if where.split is not None:
        keys = _split_keys(con, where.split)
        conditions.append(f"p.frame_key IN ({', '.join('?' * len(keys))})")
        params += keys
    if where.dataset_version is not None:
        conditions.append(f"p.frame_key IN ({dataset_frames.MEMBERS_SQL})")
        params.append(where.dataset_version)
    if where.detection_ids is not None:
        ids = list(where.detection_ids) or [""]
        conditions.append(f"p.detection_id IN ({', '.join('?' * len(ids))})")
        params += ids
    if where.with_jpeg:
        conditions.append(
            "p.frame_key IN (SELECT frame_key FROM frames WHERE jpeg_path IS NOT NULL)"
        )
    return " AND ".join(conditions), params


DETECTION_COLUMNS = (
    "p.detection_id, p.frame_key, p.class_id, p.class_name, p.confidence, p.uncertain, "
    "p.x1, p.y1, p.x2, p.y2, p.model_version"
)


COUNT_CAP = 10_000
"""Matches a page counts at most past its own end: a count over a million rows costs a
full scan (0.3 s on PostgreSQL, ``bench/batch_fetch.py``); past the cap a page says
"more than"."""


def page(
    *, con: Connection, where: BrowseFilter, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int, bool]:
    """One page of matching detections, newest capture first (then detection id), each
    with its frame (``camera_id``, ``captured_at``, ``width``, ``height``, ``has_jpeg``),
    its frame's ``state`` and ``tags`` (the detection's and its frame's); the count of
    matches over all pages, and whether that count is capped (more match: counting stops
    ``COUNT_CAP`` matches past the page)."""
    condition, params = where_sql(con, where)
    cap = offset + limit + COUNT_CAP
    total = int(
        fetch_scalar(
            con.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM prediction_logs p WHERE {condition} "
                f"LIMIT {cap + 1}) AS matches",
                params,
            )
        )
        or 0
    )
    rows = fetch_dicts(
        con.execute(
            f"""
            WITH hits AS (
                SELECT {DETECTION_COLUMNS}, p.captured_at FROM prediction_logs p
                WHERE {condition}
                ORDER BY p.captured_at DESC, p.detection_id LIMIT ? OFFSET ?
            )
            SELECT hits.*, f.camera_id, f.width, f.height, f.jpeg_path IS NOT NULL AS has_jpeg,
                   q.status AS queue_status
            FROM hits JOIN frames f USING (frame_key)
            LEFT JOIN labeling_queue q USING (frame_key)
            ORDER BY hits.captured_at DESC, hits.detection_id
            """,
            [*params, limit, offset],
        )
    )
    _with_state_and_tags(con, rows)
    return rows, min(total, cap), total > cap


def _with_state_and_tags(con: Connection, rows: list[dict[str, Any]]) -> None:
    """Add ``state`` and ``tags`` (detection's then frame's) to detection rows, in place."""
    found = tags.of_frames(con=con, frame_keys=sorted({r["frame_key"] for r in rows}))
    for row in rows:
        row["state"] = STATE_OF_STATUS.get(row.pop("queue_status") or "", "unlabeled")
        row["tags"] = found.get(("detection", row["detection_id"]), []) + found.get(
            ("frame", row["frame_key"]), []
        )


KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
"""The alphabet of frame keys (the wire's ``FrameKey``) and so of detection ids."""


def literal_list(values: Iterable[str]) -> str:
    """``values`` as an SQL list of string literals, for ``IN (...)``: on DuckDB a list of
    literals is answered from the table's index or zonemaps, where the same list as
    parameters is a join over every row (``bench/batch_fetch.py``: 3-5x slower at 1M
    detections). Only values of ``KEY_PATTERN`` are kept (nothing else can be stored, and
    they need no escaping); ``NULL`` when none is left, which matches nothing."""
    kept = sorted({v for v in values if KEY_PATTERN.match(v)})
    return ", ".join(f"'{v}'" for v in kept) or "NULL"


def _frame_of(id_: str) -> str | None:
    """The frame key a detection id names (``<frame_key>:<index>``), or None."""
    frame_key, _, index = id_.rpartition(":")
    return frame_key if frame_key and index.isdigit() else None


def fetch(*, con: Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Frames and detections by id: each id is a ``frame_key`` or a ``detection_id``
    (``<frame_key>:<index>``; an id that is both a stored frame's key and a detection's id
    is the frame).

    Returns:
        ``id -> item`` for the ids stored (others are absent). An item: ``kind``
        (``frame`` / ``detection``), the frame's ``frame_key``, ``camera_id``,
        ``captured_at``, ``model_version``, ``width``, ``height``, ``has_jpeg``, ``state``,
        the frame's ``tags``, and ``detections`` (each with ``detection_id``, class,
        ``confidence``, ``uncertain``, box ``x1..y2``, ``model_version`` and its ``tags``):
        every detection of a frame, or the one a detection id names.
    """
    candidates = {*ids, *filter(None, map(_frame_of, ids))}
    # The detections are the slow read (~800 rows fetched by index on the DuckDB file):
    # it runs beside the frames, queue and tags reads, over every frame the ids may name.
    # Neither a detection's id nor its model version is read: both follow from its frame
    # (``<frame_key>:<detection_index>``; ingest writes the frame's version on each
    # detection). Fetching the ~800 FSST-compressed id strings row by row cost ~17 ms of
    # the call on the DuckDB file (bench/batch_fetch.py, 1M detections).
    with read_beside(
        con,
        "SELECT frame_key, detection_index, class_id, class_name, confidence, uncertain, "
        "x1, y1, x2, y2 FROM prediction_logs "
        f"WHERE frame_key IN ({literal_list(candidates)}) ORDER BY detection_index",
    ) as detection_rows:
        frames = {
            r["frame_key"]: r
            for r in fetch_dicts(
                con.execute(
                    f"""
                    SELECT frame_key, camera_id, captured_at, model_version, width, height,
                           jpeg_path IS NOT NULL AS has_jpeg
                    FROM frames WHERE frame_key IN ({literal_list(candidates)})
                    """
                )
            )
        }
        if not frames:
            return {}
        asked = {i: (i if i in frames else _frame_of(i) or "") for i in ids}
        involved = {k for k in asked.values() if k in frames}
        status: dict[str, str] = dict(
            con.execute(
                "SELECT frame_key, status FROM labeling_queue "
                f"WHERE frame_key IN ({literal_list(involved)})"
            ).fetchall()
        )
        found_tags = tags.of_frames(con=con, frame_keys=sorted(involved))
        of_frame: dict[str, list[dict[str, Any]]] = {}
        for row in detection_rows():
            frame_key = row["frame_key"]
            if frame_key in involved:
                row["detection_id"] = f"{frame_key}:{row.pop('detection_index')}"
                row["model_version"] = frames[frame_key]["model_version"]
                of_frame.setdefault(frame_key, []).append(row)
    detections = {d["detection_id"]: d for rows in of_frame.values() for d in rows}
    items: dict[str, dict[str, Any]] = {}
    for id_, frame_key in asked.items():
        is_frame = id_ in frames
        if frame_key not in frames or not (is_frame or id_ in detections):
            continue
        chosen = of_frame.get(frame_key, []) if is_frame else [detections[id_]]
        items[id_] = {
            **frames[frame_key],
            "kind": "frame" if is_frame else "detection",
            "state": STATE_OF_STATUS.get(status.get(frame_key) or "", "unlabeled"),
            "tags": found_tags.get(("frame", frame_key), []),
            "detections": [
                {**d, "tags": found_tags.get(("detection", d["detection_id"]), [])} for d in chosen
            ],
        }
    return items


def thumbnail_source(
    *, con: Connection, frame_key: str | None = None, detection_id: str | None = None
) -> dict[str, Any] | None:
    """What a thumbnail is cut from: the frame's ``jpeg_path`` (None when no JPEG is
    stored), ``width``, ``height`` and, for a detection, its box ``x1..y2``; None when
    the frame or detection is not stored."""
    if detection_id is not None:
        rows = fetch_dicts(
            con.execute(
                """
                SELECT f.jpeg_path, f.width, f.height, p.x1, p.y1, p.x2, p.y2
                FROM prediction_logs p JOIN frames f USING (frame_key)
                WHERE p.detection_id = ?
                """,
                [detection_id],
            )
        )
    else:
        rows = fetch_dicts(
            con.execute(
                "SELECT jpeg_path, width, height FROM frames WHERE frame_key = ?", [frame_key]
            )
        )
    return rows[0] if rows else None


def facets(*, con: Connection) -> dict[str, list[str]]:
    """The values the browser's filters offer: the ``cameras``, ``classes`` and
    ``model_versions`` seen in the stored frames and detections, sorted, and the recorded
    ``dataset_versions``, newest first."""
    return {
        "cameras": [
            str(r[0])
            for r in con.execute("SELECT DISTINCT camera_id FROM frames ORDER BY 1").fetchall()
        ],
        "classes": [
            str(r[0])
            for r in con.execute(
                "SELECT DISTINCT class_name FROM prediction_logs ORDER BY 1"
            ).fetchall()
        ],
        "model_versions": [
            str(r[0])
            for r in con.execute("SELECT DISTINCT model_version FROM frames ORDER BY 1").fetchall()
        ],
        "dataset_versions": [v["dataset_version"] for v in dataset_frames.versions(con=con)],
    }


def with_frames(
    *, con: Connection, frame_keys: Sequence[str], detection_ids: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The stored frames of ``frame_keys`` and of the detections ``detection_ids``, and
    every detection of those frames: ``(frame_keys, detection_ids)``, each sorted."""
    keys = set(frame_keys)
    if detection_ids:
        keys.update(
            str(r[0])
            for r in con.execute(
                f"""
                SELECT DISTINCT frame_key FROM prediction_logs
                WHERE detection_id IN ({", ".join("?" * len(detection_ids))})
                """,
                list(detection_ids),
            ).fetchall()
        )
    if not keys:
        return [], []
    marks = ", ".join("?" * len(keys))
    stored = sorted(
        str(r[0])
        for r in con.execute(
            f"SELECT frame_key FROM frames WHERE frame_key IN ({marks})", sorted(keys)
        ).fetchall()
    )
    detections = sorted(
        str(r[0])
        for r in con.execute(
            f"SELECT detection_id FROM prediction_logs WHERE frame_key IN ({marks})", sorted(keys)
        ).fetchall()
    )
    return stored, detections
