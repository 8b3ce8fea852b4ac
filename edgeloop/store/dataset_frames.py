"""The ``dataset_versions`` and ``dataset_frames`` tables: which frames each dataset version
holds, and in which split.

A dataset version (``v3``) is a git tag in the DVC data repo (``edgeloop.datasets.repo``);
its manifest lists its frames. The ``training_dataset`` asset records each version it
commits here (and any older version of the repo not recorded yet), so the dataset browser
filters on a version with a join (``edgeloop.store.browse``) and never reads the data repo,
which a networked API replica does not have. A version never changes once committed, so
recording it again changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from edgeloop.store.connection import Connection, fetch_dicts, transaction

VERSION_PATTERN = re.compile(r"^v[1-9][0-9]{0,8}$")
"""A dataset version's name: ``v<N>``, N from 1 (the data repo's tags,
``edgeloop.datasets.repo.DatasetRepo._next_version``)."""


def version_number(version: str) -> int:
    """``N`` of a dataset version ``v<N>``.

    Raises:
        ValueError: not a dataset version's name (``VERSION_PATTERN``).
    """
    if not VERSION_PATTERN.match(version):
        raise ValueError(f"a dataset version is v1, v2, …; got {version!r}")
    return int(version[1:])


def record(
    *,
    con: Connection,
    version: str,
    train_frames: Sequence[str],
    val_frames: Sequence[str],
    recorded_at: datetime,
) -> bool:
    """Record that dataset ``version`` holds the frames ``train_frames`` (train split) and
    ``val_frames`` (held-out val split); runs in its own transaction.

    Returns:
        True when recorded now; False when the version was recorded already (it is left
        as it is: a committed version never changes).

    Raises:
        ValueError: ``version`` is not ``v<N>``, or a frame is in both splits.
    """
    version_number(version)
    both = set(train_frames) & set(val_frames)
    if both:
        raise ValueError(f"frames in both splits of {version}: {sorted(both)[:5]}")
    members = pa.table(
        {
            "frame_key": pa.array([*train_frames, *val_frames], pa.string()),
            "split": pa.array(["train"] * len(train_frames) + ["val"] * len(val_frames)),
        }
    )
    with transaction(con):
        inserted = con.execute(
            """
            INSERT INTO dataset_versions
                (dataset_version, frames, train_frames, val_frames, recorded_at)
            VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (dataset_version) DO NOTHING
            RETURNING dataset_version
            """,
            [
                version,
                members.num_rows,
                len(train_frames),
                len(val_frames),
                recorded_at,
            ],
        ).fetchall()
        if not inserted:
            return False
        con.register("new_dataset_frames", members)
        try:
            con.execute(
                "INSERT INTO dataset_frames (dataset_version, frame_key, split) "
                "SELECT ?, frame_key, split FROM new_dataset_frames",
                [version],
            )
        finally:
            con.unregister("new_dataset_frames")
    return True


def versions(*, con: Connection) -> list[dict[str, Any]]:
    """The recorded dataset versions, newest (highest ``N``) first: ``dataset_version``,
    ``frames``, ``train_frames``, ``val_frames`` (counts) and ``recorded_at`` (UTC)."""
    rows = fetch_dicts(
        con.execute(
            "SELECT dataset_version, frames, train_frames, val_frames, recorded_at "
            "FROM dataset_versions"
        )
    )
    return sorted(rows, key=lambda r: version_number(r["dataset_version"]), reverse=True)


MEMBERS_SQL = "SELECT frame_key FROM dataset_frames WHERE dataset_version = ?"
"""The frame keys of one dataset version (one parameter: the version), as SQL for
``frame_key IN (…)`` (``edgeloop.store.browse``): answered from the primary key."""
