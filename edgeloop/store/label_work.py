"""Each labeler's submits, with the model's boxes their frames showed: what the console's
per-labeler throughput is computed from (``edgeloop.audit.throughput``).

A read over tables other modules own (``reviewed_labels``: ``edgeloop.store.labels``;
``prediction_logs``, ``frames``: ``edgeloop.store.frames``), as ``edgeloop.store.changes`` is.
A pre-label is a detection of the labeled frame: the labeling page and the grid review
draw every detection of the frame as a box to accept or change.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from itertools import groupby

from edgeloop.annotations import REVIEWED_BOXES
from edgeloop.audit import Box, Submit, changed_pre_labels
from edgeloop.store.connection import Connection, fetch_dicts, parse_json

KEYS_PER_QUERY = 1000
"""Frame keys per detections query: an ``IN`` list of the labeled frames' keys, where a
semi-join with the labels scanned every detection (600 labels over 1,000,000 SIMULATED
detections, DuckDB, this read profiled: 0.31 s with the join, 0.16 s with the list)."""


def _pre_labels(con: Connection, frame_keys: list[str]) -> dict[str, list[Box]]:
    """Each frame's detections, clamped to the frame (xyxy px), class name."""
    found: dict[str, list[Box]] = defaultdict(list)
    for start in range(0, len(frame_keys), KEYS_PER_QUERY):
        chunk = frame_keys[start : start + KEYS_PER_QUERY]
        marks = ", ".join("?" * len(chunk))
        rows = con.execute(
            f"""
            SELECT p.frame_key, p.x1, p.y1, p.x2, p.y2, p.class_name, f.width, f.height
            FROM prediction_logs p
            LEFT JOIN (SELECT frame_key, width, height FROM frames WHERE frame_key IN ({marks})) f
                ON f.frame_key = p.frame_key
            WHERE p.frame_key IN ({marks})
            ORDER BY p.frame_key, p.detection_id
            """,
            chunk + chunk,
        ).fetchall()
        for key, x1, y1, x2, y2, name, w, h in rows:
            if w is not None and h is not None:
                x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
            found[key].append(((float(x1), float(y1), float(x2), float(y2)), str(name)))
    return found


def submits(*, con: Connection, since: datetime | None) -> dict[str, list[Submit]]:
    """Per labeler, their submits of labels stored at or after ``since`` (UTC; None: all),
    in time order: labels stored at the same instant are one submit (a grid page).

    Returns:
        ``{labeler: [Submit, ...]}``; each label's pre-labels are its frame's detections,
        clamped to the frame (xyxy px), and ``changed`` counts those its boxes do not keep
        (``edgeloop.audit.changed_pre_labels``).
    """
    when = "" if since is None else "WHERE l.labeled_at >= ?"
    params = [] if since is None else [since]
    labels = fetch_dicts(
        con.execute(
            f"""
            SELECT l.labeler, l.labeled_at, l.frame_key, CAST(l.boxes AS VARCHAR) AS boxes,
                   l.box_count
            FROM reviewed_labels l {when}
            ORDER BY l.labeler, l.labeled_at, l.label_id
            """,
            params,
        )
    )
    pre_labels = _pre_labels(con, sorted({label["frame_key"] for label in labels}))
    result: dict[str, list[Submit]] = {}
    for labeler, rows in groupby(labels, key=lambda r: r["labeler"]):
        result[labeler] = []
        for at, same in groupby(rows, key=lambda r: r["labeled_at"]):
            items = boxes = shown = changed = 0
            for label in same:
                reviewed = [
                    (b.bbox_xyxy, b.class_name)
                    for b in REVIEWED_BOXES.validate_python(parse_json(label["boxes"]) or [])
                ]
                model = pre_labels.get(label["frame_key"], [])
                items += 1
                boxes += int(label["box_count"])
                shown += len(model)
                changed += changed_pre_labels(model, reviewed)
            result[labeler].append(Submit(at, items, boxes, shown, changed))
    return result
