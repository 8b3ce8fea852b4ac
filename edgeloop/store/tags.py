"""The ``tags`` table: words on frames and detections, set by people or suggested by the loop.

A tag is short normalised text (``normalise``) on one target: a frame (``frame_key``) or a
detection (``detection_id``). ``source`` says who put it there: ``person`` (a labeler or
an admin, through the API or the browser) or ``suggested`` (the loop: the detection's
class, the camera's scene, the best-matching CLIP tag prompt). A person's tag replaces a
suggestion of the same text on the same target; a suggestion never replaces a person's.
Every row carries its frame's key, so a page of frames reads all its tags in one lookup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

from edgeloop.store.connection import Connection, fetch_dicts

TargetKind = Literal["frame", "detection"]
Source = Literal["person", "suggested"]
TAG_MAX_CHARS = 64
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9 _.:/-]*$")
"""A normalised tag: lower case letters, digits, space and ``_ . : / -``, starting with a
letter or digit (``scene:cam-1``, ``person carrying a box``)."""
SCENE_PREFIX = "scene:"
"""Suggested scene tags are ``scene:<camera_id>`` (the camera is the scene it watches)."""


def normalise(text: str) -> str:
    """``text`` as a tag: stripped, lower case, runs of white space as one space.

    Raises:
        ValueError: empty, longer than ``TAG_MAX_CHARS``, or other characters than
            ``TAG_PATTERN`` allows (says which).
    """
    tag = " ".join(str(text).split()).lower()
    if not tag or len(tag) > TAG_MAX_CHARS:
        raise ValueError(f"a tag has 1 to {TAG_MAX_CHARS} characters, got {len(tag)}")
    if not TAG_PATTERN.match(tag):
        raise ValueError(
            f"tag {tag!r}: use letters, digits, spaces and _ . : / - (starting with a "
            "letter or digit)"
        )
    return tag


def _placeholders(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def add(
    *,
    con: Connection,
    frame_keys: Sequence[str] = (),
    detection_ids: Sequence[str] = (),
    tag: str,
    source: Source,
    created_by: str,
    now: datetime,
    score: float | None = None,
) -> int:
    """Tag the stored frames ``frame_keys`` and detections ``detection_ids`` with ``tag``
    (already ``normalise``d). Keys not stored are left out.

    A ``person`` tag turns a suggestion of the same text into a person's; a ``suggested``
    one leaves any existing tag as it is. Returns the rows inserted or changed.
    """
    conflict = (
        "DO UPDATE SET source = excluded.source, created_by = excluded.created_by, "
        "created_at = excluded.created_at, score = NULL WHERE tags.source <> 'person'"
        if source == "person"
        else "DO NOTHING"
    )
    changed = 0
    for kind, table, column, ids in (
        ("frame", "frames", "frame_key", list(frame_keys)),
        ("detection", "prediction_logs", "detection_id", list(detection_ids)),
    ):
        if not ids:
            continue
        rows = con.execute(
            f"""
            INSERT INTO tags
                (target_kind, target_id, frame_key, tag, source, score, created_by, created_at)
            SELECT '{kind}', {column}, frame_key, ?, ?, ?, ?, ?
            FROM {table} WHERE {column} IN ({_placeholders(ids)})
            ON CONFLICT (target_kind, target_id, tag) {conflict}
            RETURNING target_id
            """,
            [tag, source, score, created_by, now, *ids],
        ).fetchall()
        changed += len(rows)
    return changed


def remove(*, con: Connection, target_kind: TargetKind, target_id: str, tag: str) -> bool:
    """Take ``tag`` off one frame or detection; True when it was there."""
    rows = con.execute(
        """
        DELETE FROM tags WHERE target_kind = ? AND target_id = ? AND tag = ?
        RETURNING tag
        """,
        [target_kind, target_id, tag],
    ).fetchall()
    return bool(rows)


def of_frames(*, con: Connection, frame_keys: Sequence[str]) -> dict[tuple[str, str], list[dict]]:
    """Every tag on the frames ``frame_keys`` and on their detections.

    Returns:
        ``(target_kind, target_id) -> [{"tag", "source", "score"}]``, tags sorted by text;
        targets without a tag are absent.
    """
    if not frame_keys:
        return {}
    found: dict[tuple[str, str], list[dict]] = {}
    for kind, target, tag, source, score in con.execute(
        f"""
        SELECT target_kind, target_id, tag, source, score FROM tags
        WHERE frame_key IN ({_placeholders(frame_keys)})
        ORDER BY target_kind, target_id, tag
        """,
        list(frame_keys),
    ).fetchall():
        found.setdefault((kind, target), []).append(
            {"tag": tag, "source": source, "score": None if score is None else float(score)}
        )
    return found


def counts(*, con: Connection, prefix: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Tags in use, most used first: ``tag``, ``frames`` and ``detections`` tagged, and
    ``suggested`` (how many of those rows are suggestions). ``prefix``: only tags that
    start with it (a search box's completion)."""
    condition, params = (
        ("WHERE tag LIKE ?", [prefix.replace("%", "").lower() + "%"]) if prefix else ("", [])
    )
    sql = (
        "SELECT tag, count(*) FILTER (WHERE target_kind = 'frame') AS frames, "
        "count(*) FILTER (WHERE target_kind = 'detection') AS detections, "
        "count(*) FILTER (WHERE source = 'suggested') AS suggested "
        f"FROM tags {condition} GROUP BY tag ORDER BY count(*) DESC, tag LIMIT ?"
    )
    return fetch_dicts(con.execute(sql, [*params, limit]))


def suggest_from_detections(
    *, con: Connection, frame_keys: Sequence[str], created_by: str, now: datetime
) -> int:
    """The loop's own suggestions for the frames ``frame_keys``: each detection tagged
    with its class name, each frame with its scene (``scene:<camera_id>``), marked
    ``suggested``; tags already there are kept. Returns the rows inserted.

    A class or camera whose name does not make a valid tag (``normalise``) is left out.
    """
    if not frame_keys:
        return 0
    inserted = 0
    classes = con.execute(
        f"""
        SELECT DISTINCT class_name FROM prediction_logs
        WHERE frame_key IN ({_placeholders(frame_keys)})
        """,
        list(frame_keys),
    ).fetchall()
    cameras = con.execute(
        f"SELECT DISTINCT camera_id FROM frames WHERE frame_key IN ({_placeholders(frame_keys)})",
        list(frame_keys),
    ).fetchall()
    for kind, table, column, group, names in (
        ("detection", "prediction_logs", "detection_id", "class_name", _tags_of(classes)),
        ("frame", "frames", "frame_key", "camera_id", _tags_of(cameras, SCENE_PREFIX)),
    ):
        for name, tag in names:
            rows = con.execute(
                f"""
                INSERT INTO tags
                    (target_kind, target_id, frame_key, tag, source, score, created_by,
                     created_at)
                SELECT '{kind}', {column}, frame_key, ?, 'suggested', NULL, ?, ?
                FROM {table}
                WHERE {group} = ? AND frame_key IN ({_placeholders(frame_keys)})
                ON CONFLICT (target_kind, target_id, tag) DO NOTHING
                RETURNING target_id
                """,
                [tag, created_by, now, name, *frame_keys],
            ).fetchall()
            inserted += len(rows)
    return inserted


def frames_received(
    *, con: Connection, since: datetime | None, until: datetime, with_jpeg: bool = False
) -> list[str]:
    """The keys of the frames received (``frames.received_at``, the loop host's clock) in
    ``[since, until)`` (``since`` None: from the first), sorted: what the loop suggests
    tags for next (the ``suggested_tags`` asset). ``with_jpeg``: only frames with a stored
    JPEG (the only ones with crops in the crop index)."""
    condition = "received_at < ?" + (" AND received_at >= ?" if since is not None else "")
    if with_jpeg:
        condition += " AND jpeg_path IS NOT NULL"
    params: list[Any] = [until] + ([since] if since is not None else [])
    return [
        str(r[0])
        for r in con.execute(
            f"SELECT frame_key FROM frames WHERE {condition} ORDER BY frame_key", params
        ).fetchall()
    ]


def _tags_of(rows: Iterable[tuple[Any, ...]], prefix: str = "") -> list[tuple[str, str]]:
    """``(name, tag)`` for each name that makes a valid tag."""
    found = []
    for (name,) in rows:
        try:
            found.append((str(name), normalise(prefix + str(name))))
        except ValueError:
            continue
    return found


def of_dataset(*, con: Connection, frame_keys: Sequence[str]) -> dict[str, list[str]]:
    """For a dataset version's manifest: each frame's tags and its detections' (people's
    and suggestions), as sorted distinct texts; frames without a tag are absent."""
    if not frame_keys:
        return {}
    found: dict[str, set[str]] = {}
    for frame_key, tag in con.execute(
        "SELECT frame_key, tag FROM tags WHERE frame_key IN (SELECT unnest(CAST(? AS VARCHAR[])))",
        [list(frame_keys)],
    ).fetchall():
        found.setdefault(str(frame_key), set()).add(str(tag))
    return {key: sorted(values) for key, values in found.items()}
