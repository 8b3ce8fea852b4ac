"""The ``model_deployments`` table: every alias move of the registry (who, when, why, metrics).

``edgeloop.registry.move_alias`` writes it on every promotion, registration and rollback;
the API's model status and ``edgeloop status`` read it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from edgeloop.store.connection import Connection, fetch_dicts, fetch_scalar, parse_json


def record(
    *,
    con: Connection,
    model_name: str,
    version: str,
    alias: str,
    previous_version: str | None,
    action: str,
    actor: str,
    reason: str,
    metrics: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> None:
    """Insert one alias move (``created_at`` default now, UTC; ``metrics`` stored as JSON)."""
    con.execute(
        """
        INSERT INTO model_deployments
            (created_at, model_name, version, alias, previous_version, action, actor, reason, metrics)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            created_at or datetime.now(UTC),
            model_name,
            str(version),
            alias,
            previous_version,
            action,
            actor,
            reason,
            json.dumps(metrics or {}),
        ],
    )


def recent(
    *, con: Connection, model_name: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest moves first (of one model, or of all); ``metrics`` parsed from JSON."""
    where = "WHERE model_name = ?" if model_name is not None else ""
    params: list[Any] = [model_name] if model_name is not None else []
    rows = fetch_dicts(
        con.execute(
            f"""
            SELECT * FROM model_deployments {where}
            ORDER BY created_at DESC, deployment_id DESC LIMIT ?
            """,
            [*params, limit],
        )
    )
    for row in rows:
        row["metrics"] = parse_json(row["metrics"]) or {}
    return rows


def latest_metrics(*, con: Connection, model_name: str, version: str) -> dict[str, Any]:
    """Metrics of the newest move of a version ({} when it never moved)."""
    rows = con.execute(
        """
        SELECT metrics FROM model_deployments WHERE model_name = ? AND version = ?
        ORDER BY created_at DESC, deployment_id DESC LIMIT 1
        """,
        [model_name, version],
    ).fetchall()
    return (parse_json(rows[0][0]) or {}) if rows else {}


def evaluation_records(*, con: Connection, model_name: str) -> dict[str, dict[str, Any]]:
    """Per version, the held-out evaluation recorded with its newest move that carried one
    (the ``model_promotion`` asset's record: ``candidate`` and ``production`` metrics,
    ``evidence``, ``verdict``, ...); versions no such move names are absent. A hand
    promotion or a rollback records no evaluation, so a version keeps the one it was
    promoted with. Alias moves are rare (one per promotion), so this reads them all."""
    rows = con.execute(
        """
        SELECT version, metrics FROM model_deployments WHERE model_name = ?
        ORDER BY created_at DESC, deployment_id DESC
        """,
        [model_name],
    ).fetchall()
    records: dict[str, dict[str, Any]] = {}
    for version, raw in rows:
        metrics = parse_json(raw) or {}
        if str(version) not in records and isinstance(metrics.get("candidate"), dict):
            records[str(version)] = dict(metrics)
    return records


def alias_moves(*, con: Connection, model_name: str, alias: str) -> list[tuple[str, str]]:
    """``(version, action)`` of every move of one alias, oldest first."""
    rows = con.execute(
        """
        SELECT version, action FROM model_deployments
        WHERE model_name = ? AND alias = ?
        ORDER BY created_at, deployment_id
        """,
        [model_name, alias],
    ).fetchall()
    return [(str(version), str(action)) for version, action in rows]


def alias_at(*, con: Connection, model_name: str, alias: str, at: datetime) -> str | None:
    """The version ``alias`` pointed at, at time ``at`` (its newest move at or before it)."""
    rows = con.execute(
        """
        SELECT version FROM model_deployments
        WHERE model_name = ? AND alias = ? AND created_at <= ?
        ORDER BY created_at DESC, deployment_id DESC LIMIT 1
        """,
        [model_name, alias, at],
    ).fetchall()
    return str(rows[0][0]) if rows else None


def latest_move_id(*, con: Connection) -> int | None:
    """The id of the newest recorded alias move (any model, any alias), or None: a cheap
    marker that changes whenever an alias moves through edgeloop."""
    value = fetch_scalar(con.execute("SELECT max(deployment_id) FROM model_deployments"))
    return int(value) if value is not None else None
