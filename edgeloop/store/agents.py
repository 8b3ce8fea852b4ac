"""The ``agent_heartbeats`` table: the latest heartbeat of every edge agent.

Written by ``POST /api/agents/heartbeat`` (one upsert per heartbeat, keyed by
``agent_id``; ``received_at`` is the API's clock, so a camera host with a wrong clock
still reads as online or stale correctly); read by ``GET /api/agents`` and the
console's fleet panel. Counters count since the agent started; rates and inference
percentiles (ms) cover the agent's recent window (``edgeloop.wire.AgentHeartbeat``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edgeloop.store.connection import Connection, fetch_dicts
from edgeloop.wire import AgentHeartbeat

COLUMNS = (
    "agent_id",
    "camera_id",
    "host",
    "agent_version",
    "received_at",
    "sent_at",
    "started_at",
    "model_version",
    "source_connected",
    "reconnects",
    "frames_processed",
    "frames_skipped",
    "frames_per_s",
    "inference_ms_p50",
    "inference_ms_p95",
    "spool_batches",
    "spool_bytes",
    "spool_dropped_batches",
    "execution_provider",
    "model_precision",
)
"""The table's columns: those of its ``CREATE`` (``edgeloop.store.schema``, v3),
``execution_provider`` (v8) and ``model_precision`` (v9)."""

_UPSERT_SQL = f"""
INSERT INTO agent_heartbeats ({", ".join(COLUMNS)})
VALUES ({", ".join("?" for _ in COLUMNS)})
ON CONFLICT (agent_id) DO UPDATE SET
{", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "agent_id")}
"""


def upsert(*, con: Connection, heartbeat: AgentHeartbeat, received_at: datetime) -> None:
    """Store ``heartbeat`` as its agent's latest (replacing the previous one).

    Args:
        heartbeat: what the agent sent (times timezone-aware UTC).
        received_at: the API's receive time, timezone-aware UTC: what "last seen" and the
            heartbeat age are computed from.

    Raises:
        ValueError: ``received_at`` has no timezone.
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware (UTC)")
    values: dict[str, Any] = heartbeat.model_dump(exclude={"wire_version"})
    values["received_at"] = received_at
    con.execute(_UPSERT_SQL, [values[c] for c in COLUMNS])


def latest(*, con: Connection) -> list[dict[str, Any]]:
    """Every agent's latest heartbeat (all ``COLUMNS``), by camera then agent."""
    return fetch_dicts(
        con.execute(
            f"SELECT {', '.join(COLUMNS)} FROM agent_heartbeats ORDER BY camera_id, agent_id"
        )
    )
