"""The ``drift_reports`` table: one row per camera per drift computation.

Written by the ``drift_report`` asset; the newest row of each camera is what the API,
the queue ranking (a drifted camera's items are boosted) and ``edgeloop status`` read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeloop.store.connection import Connection, fetch_dicts, parse_json

if TYPE_CHECKING:
    import pandas as pd

LATEST_PER_CAMERA_SQL = """
SELECT * FROM drift_reports
QUALIFY row_number() OVER (PARTITION BY camera_id ORDER BY computed_at DESC) = 1
"""
"""The newest drift report of each camera, as SQL for a CTE or a join."""

COLUMNS = (
    "camera_id",
    "computed_at",
    "reference_frames",
    "current_frames",
    "drift_share",
    "min_p_value",
    "drifted",
    "p_values",
    "report_path",
)
VERSION_COLUMNS = ("model_version", "reference_model_version", "model_versions")
"""Optional columns (schema 11): the model version behind most frames of the current and
of the reference window, and the current window's frames and drift per model version
(JSON, ``assets/drift.py``); NULL in reports written before them."""


def insert(*, con: Connection, rows: pd.DataFrame) -> int:
    """Insert drift results, one row per camera (columns ``COLUMNS``, and any of
    ``VERSION_COLUMNS``; ``p_values`` and ``model_versions`` as JSON text); returns the rows
    inserted."""
    missing = [c for c in COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"drift rows lack the columns {missing}")
    columns = [*COLUMNS, *(c for c in VERSION_COLUMNS if c in rows.columns)]
    con.register("new_drift_reports", rows[columns])
    try:
        selected = ", ".join(
            f"CAST({c} AS JSON)" if c in ("p_values", "model_versions") else c for c in columns
        )
        con.execute(
            f"INSERT INTO drift_reports ({', '.join(columns)}) "
            f"SELECT {selected} FROM new_drift_reports"
        )
    finally:
        con.unregister("new_drift_reports")
    return len(rows)


def latest_per_camera(*, con: Connection) -> list[dict[str, Any]]:
    """The newest report of each camera, by camera_id; ``p_values`` parsed from JSON."""
    rows = fetch_dicts(con.execute(f"{LATEST_PER_CAMERA_SQL} ORDER BY camera_id"))
    for row in rows:
        row["p_values"] = parse_json(row["p_values"]) or {}
        row["model_versions"] = parse_json(row.get("model_versions")) or {}
    return rows
