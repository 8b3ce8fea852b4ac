"""The ``thumbnails`` table: which stored object holds a thumbnail or crop of a JPEG.

A thumbnail is named by its content (``edgeloop.thumbnails``: the sha256 of the source
JPEG's bytes, the crop box and the size), stored once in the object store; this table maps
``(source_key, spec)`` — the frame JPEG's stored key and what was cut from it — to that
hash and object, so a view finds the thumbnail (and answers ``If-None-Match``) without
reading the source JPEG again. Rows are written once and never changed (the JPEGs they
come from never change either).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edgeloop.store.connection import Connection, fetch_dicts


def get(*, con: Connection, source_key: str, spec: str) -> dict[str, Any] | None:
    """``sha256``, ``object_key`` and ``bytes`` of the thumbnail ``spec`` of the JPEG
    ``source_key``, or None when it was never made."""
    rows = fetch_dicts(
        con.execute(
            "SELECT sha256, object_key, bytes FROM thumbnails WHERE source_key = ? AND spec = ?",
            [source_key, spec],
        )
    )
    return rows[0] if rows else None


def record(
    *,
    con: Connection,
    source_key: str,
    spec: str,
    sha256: str,
    object_key: str,
    size_bytes: int,
    now: datetime,
) -> None:
    """Note that the object ``object_key`` (content hash ``sha256``) holds the thumbnail
    ``spec`` of ``source_key``. Idempotent: a row already there (another request made the
    same thumbnail first) is kept."""
    con.execute(
        """
        INSERT INTO thumbnails (source_key, spec, sha256, object_key, bytes, created_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (source_key, spec) DO NOTHING
        """,
        [source_key, spec, sha256, object_key, size_bytes, now],
    )


def count(*, con: Connection) -> int:
    """Thumbnails recorded."""
    return int(con.execute("SELECT count(*) FROM thumbnails").fetchall()[0][0])
