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


def _clamped(row: dict[str, object]) -> Box:
    w, h = row["width"], row["height"]
    x1, y1, x2, y2 = (float(row[k]) for k in ("x1", "y1", "x2", "y2"))  # type: ignore[arg-type]
    if isinstance(w, int) and isinstance(h, int):
        x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
    return (x1, y1, x2, y2), str(row["class_name"])


def submits(*, con: Connection, since: datetime | None) -> dict[str, list[Submit]]:
    """Per labeler, their submits of labels stored at or after ``since`` (UTC; None: all),
    in time order: labels stored at the same instant are one submit (a grid page).

    Returns:
        ``{labeler: [Submit, ...]}``; each label's pre-labels are its frame's detections,
        clamped to the frame (xyxy px), and ``changed`` counts those its boxes do not keep
        (``edgeloop.audit.changed_pre_labels``).
    """
    when = "" if since is None else "WHERE l.labeled_at >= ?"
    also = "" if since is None else "AND l.labeled_at >= ?"
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
    detections = fetch_dicts(
        con.execute(
            f"""
            SELECT p.frame_key, p.x1, p.y1, p.x2, p.y2, p.class_name, f.width, f.height
            FROM prediction_logs p LEFT JOIN frames f ON f.frame_key = p.frame_key
            WHERE EXISTS (
                SELECT 1 FROM reviewed_labels l WHERE l.frame_key = p.frame_key {also}
            )
            ORDER BY p.frame_key, p.detection_id
            """,
            params,
        )
    )
    pre_labels: dict[str, list[Box]] = defaultdict(list)
    for row in detections:
        pre_labels[row["frame_key"]].append(_clamped(row))
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
