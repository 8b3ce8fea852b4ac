"""The ``training_runs`` table: one row per fine-tuning run, with the label cutoff it saw.

``label_cutoff`` (the ``labeled_at`` of the newest label in the run's dataset) is what
"labels since the last training run" counts from, and where the drift reference window
ends (``assets/drift.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edgeloop.store.connection import Connection, fetch_dicts, fetch_scalar

LATEST_CUTOFF_SQL = (
    "coalesce((SELECT max(label_cutoff) FROM training_runs), TIMESTAMPTZ '1970-01-01 00:00:00+00')"
)
"""SQL expression: the newest training run's label cutoff (the epoch when none ran yet)."""


def record(
    *,
    con: Connection,
    mlflow_run_id: str,
    started_at: datetime,
    label_cutoff: datetime,
    label_count: int,
    dataset_version: str,
    model_version: str | None,
    dagster_run_id: str | None,
) -> None:
    """Insert one training run (``started_at``/``label_cutoff`` timezone-aware UTC)."""
    con.execute(
        """
        INSERT INTO training_runs (mlflow_run_id, started_at, label_cutoff, label_count,
                                   dataset_version, model_version, dagster_run_id)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        """,
        [
            mlflow_run_id,
            started_at,
            label_cutoff,
            label_count,
            dataset_version,
            model_version,
            dagster_run_id,
        ],
    )


def latest_label_cutoff(*, con: Connection) -> datetime | None:
    """The label cutoff of the newest training run, or None when none ran yet."""
    value = fetch_scalar(con.execute("SELECT max(label_cutoff) FROM training_runs"))
    return value if isinstance(value, datetime) else None


def latest_started_at(*, con: Connection) -> datetime | None:
    """When the newest training run started (UTC), or None when none ran yet."""
    value = fetch_scalar(con.execute("SELECT max(started_at) FROM training_runs"))
    return value if isinstance(value, datetime) else None


def recent(*, con: Connection, limit: int = 10) -> list[dict[str, Any]]:
    """The newest training runs first: run id, start, label count, dataset and model version."""
    return fetch_dicts(
        con.execute(
            """
            SELECT mlflow_run_id, started_at, label_count, dataset_version, model_version
            FROM training_runs ORDER BY started_at DESC LIMIT ?
            """,
            [limit],
        )
    )
