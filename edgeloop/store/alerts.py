"""The ``drift_alerts`` table: alerts raised when a camera drifts (or a promoted model's
detection mix shifts), acknowledged by people, delivered to a webhook.

Raised once: a camera and kind have at most one *live* alert — one still ``open`` (not
acknowledged), or one acknowledged while its condition holds (``cleared_at`` NULL). While
one is live the condition firing again raises nothing; once it is acknowledged *and* the
condition cleared, the next firing raises a new alert. An open alert whose condition
cleared stays open (shown until someone acknowledges it); the condition coming back
marks it active again rather than raising a second one.

Written by ``pipelines/sensors.py``' ``drift_sensor`` (through ``edgeloop.alerts``) and the
API's acknowledge route; read by ``/api/alerts``, the console's alerts panel and its live
updates (``change_marker``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from edgeloop.store.connection import Connection, fetch_dicts, parse_json, transaction

KINDS = ("drift", "class_mix")
"""``drift``: the camera's drift share passed its threshold (the seed's rule);
``class_mix``: the detection class mix shifted after a promotion."""
SEVERITIES = ("warning", "critical")
STATUSES = ("open", "acknowledged", "resolved")
"""``open``: not acknowledged; ``acknowledged``: someone saw it, the condition holds;
``resolved``: acknowledged and its condition cleared."""
DELIVERY_STATUSES = ("pending", "sent", "failed", "disabled")
"""The webhook delivery: not tried yet, accepted by the receiver (2xx), every attempt
failed (``delivery_error`` says why), no webhook configured."""

_LIVE = "camera_id = ? AND kind = ? AND (status = 'open' OR cleared_at IS NULL)"


class AlertNotFoundError(LookupError):
    """No alert has this id."""


class AlertStateError(ValueError):
    """The alert cannot take this action in its current status (e.g. acknowledged twice)."""


def raise_alert(
    *,
    con: Connection,
    camera_id: str,
    kind: str,
    summary: str,
    description: str,
    severity: str = "warning",
    value: float | None = None,
    threshold: float | None = None,
    model_version: str | None = None,
    details: dict[str, Any] | None = None,
    delivery_status: str = "pending",
    now: datetime | None = None,
) -> int | None:
    """Raise an alert for ``camera_id`` and ``kind`` unless one is live (module docstring);
    runs its own transaction.

    Args:
        value, threshold: what fired, e.g. drift share 0.67 against 0.30 ([0, 1]).
        delivery_status: ``pending`` (deliver it) or ``disabled`` (no webhook configured).
        now: default now (UTC).

    Returns:
        The new ``alert_id``, or None when a live alert already covers the condition (an
        open one whose condition had cleared is marked active again).

    Raises:
        ValueError: an unknown kind, severity or delivery status.
    """
    if (
        kind not in KINDS
        or severity not in SEVERITIES
        or delivery_status not in ("pending", "disabled")
    ):
        raise ValueError(
            f"an alert needs a kind in {KINDS}, a severity in {SEVERITIES} and a delivery "
            f"status pending or disabled; got {kind!r}, {severity!r}, {delivery_status!r}"
        )
    now = now or datetime.now(UTC)
    with transaction(con):
        live = con.execute(
            f"SELECT alert_id, cleared_at FROM drift_alerts WHERE {_LIVE} "
            "ORDER BY alert_id DESC LIMIT 1",
            [camera_id, kind],
        ).fetchall()
        if live:
            if live[0][1] is not None:
                con.execute(
                    "UPDATE drift_alerts SET cleared_at = NULL, updated_at = ? WHERE alert_id = ?",
                    [now, live[0][0]],
                )
            return None
        rows = con.execute(
            """
            INSERT INTO drift_alerts
                (camera_id, kind, severity, status, raised_at, updated_at, summary, description,
                 value, threshold, model_version, details, delivery_status)
            VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?)
            RETURNING alert_id
            """,
            [
                camera_id,
                kind,
                severity,
                now,
                now,
                summary,
                description,
                value,
                threshold,
                model_version,
                json.dumps(details or {}),
                delivery_status,
            ],
        ).fetchall()
    return int(rows[0][0])


def clear(*, con: Connection, camera_id: str, kind: str, now: datetime | None = None) -> int:
    """The condition of ``camera_id``'s ``kind`` alerts no longer holds: mark its live
    alerts cleared (an acknowledged one becomes ``resolved``; an open one stays open until
    acknowledged). Returns the alerts changed."""
    now = now or datetime.now(UTC)
    rows = con.execute(
        """
        UPDATE drift_alerts
        SET cleared_at = ?, updated_at = ?,
            status = CASE WHEN status = 'acknowledged' THEN 'resolved' ELSE status END
        WHERE camera_id = ? AND kind = ? AND cleared_at IS NULL
        RETURNING alert_id
        """,
        [now, now, camera_id, kind],
    ).fetchall()
    return len(rows)


def acknowledge(
    *, con: Connection, alert_id: int, actor: str, now: datetime | None = None
) -> dict[str, Any]:
    """Record that ``actor`` acknowledged an open alert (who and when); it becomes
    ``acknowledged``, or ``resolved`` when its condition had already cleared. Returns the
    alert as ``get`` does.

    Raises:
        AlertNotFoundError: no alert has this id.
        AlertStateError: the alert is not open (acknowledged already, or resolved).
    """
    now = now or datetime.now(UTC)
    current = get(con=con, alert_id=alert_id)
    if current is None:
        raise AlertNotFoundError(f"no alert {alert_id}")
    if current["status"] != "open":
        raise AlertStateError(
            f"alert {alert_id} is {current['status']} (by {current['acknowledged_by']} at "
            f"{current['acknowledged_at']}); only an open alert can be acknowledged"
        )
    con.execute(
        """
        UPDATE drift_alerts
        SET status = CASE WHEN cleared_at IS NULL THEN 'acknowledged' ELSE 'resolved' END,
            acknowledged_by = ?, acknowledged_at = ?, updated_at = ?
        WHERE alert_id = ? AND status = 'open'
        """,
        [actor, now, now, alert_id],
    )
    updated = get(con=con, alert_id=alert_id)
    assert updated is not None
    return updated


def _parsed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["details"] = parse_json(row["details"]) or {}
    return rows


def get(*, con: Connection, alert_id: int) -> dict[str, Any] | None:
    """One alert (every column, ``details`` parsed from JSON), or None."""
    rows = fetch_dicts(con.execute("SELECT * FROM drift_alerts WHERE alert_id = ?", [alert_id]))
    return _parsed(rows)[0] if rows else None


def list_alerts(
    *, con: Connection, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Alerts, open ones first, then newest first; only those in ``status`` when given.

    Raises:
        ValueError: an unknown status.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    where = "WHERE status = ?" if status else ""
    return _parsed(
        fetch_dicts(
            con.execute(
                f"""
                SELECT * FROM drift_alerts {where}
                ORDER BY CASE WHEN status = 'open' THEN 0 ELSE 1 END, raised_at DESC,
                         alert_id DESC
                LIMIT ?
                """,
                [*([status] if status else []), limit],
            )
        )
    )


def open_count(*, con: Connection) -> int:
    """How many alerts are open (not acknowledged)."""
    rows = con.execute("SELECT count(*) FROM drift_alerts WHERE status = 'open'").fetchall()
    return int(rows[0][0])


def pending_delivery(*, con: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Alerts whose webhook delivery has not been tried yet, oldest first."""
    return _parsed(
        fetch_dicts(
            con.execute(
                "SELECT * FROM drift_alerts WHERE delivery_status = 'pending' "
                "ORDER BY alert_id LIMIT ?",
                [limit],
            )
        )
    )


def record_delivery(
    *,
    con: Connection,
    alert_ids: list[int],
    delivered: bool,
    attempts: int,
    error: str | None = None,
    now: datetime | None = None,
) -> None:
    """Record a webhook delivery of ``alert_ids`` (one POST carries them all): ``sent`` or
    ``failed`` after ``attempts`` tries, with the last error (kept to 500 characters)."""
    now = now or datetime.now(UTC)
    for alert_id in alert_ids:
        con.execute(
            """
            UPDATE drift_alerts
            SET delivery_status = ?, delivery_attempts = delivery_attempts + ?,
                delivery_error = ?, delivered_at = ?, updated_at = ?
            WHERE alert_id = ?
            """,
            [
                "sent" if delivered else "failed",
                attempts,
                None if delivered else (error or "unknown error")[:500],
                now if delivered else None,
                now,
                alert_id,
            ],
        )


def change_marker(*, con: Connection) -> str:
    """A value that changes whenever an alert is raised, acknowledged, cleared or
    delivered (the newest id and update time): what the console's live updates poll."""
    row = con.execute("SELECT max(alert_id), max(updated_at) FROM drift_alerts").fetchall()[0]
    return f"{row[0]}@{row[1]}"
