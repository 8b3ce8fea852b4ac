"""The ``retraining_events`` table: every retrain decision (launched, deferred, skipped).

Written by the sensors (``label_count``, ``drift``), the API's manual trigger and the
retrain run itself (``link_run`` fills in the Dagster run id of the event that launched
it); read by ``/api/retraining/conditions`` and ``edgeloop status``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from edgeloop.store import training_runs
from edgeloop.store.connection import Connection, fetch_dicts, fetch_scalar

TRIGGERS = ("label_count", "drift", "manual")
DECISIONS = ("launched", "deferred", "skipped")
RUN_STATUSES = ("started", "succeeded", "failed")
"""What became of a launched run (``run_status``): its first asset started, its promotion
step finished, or it failed (``pipelines/sensors.py``' run-failure sensor)."""


def record(
    *,
    con: Connection,
    trigger: str,
    decision: str,
    reason: str,
    labels_since_training: int,
    camera_id: str | None = None,
    run_key: str | None = None,
    dagster_run_id: str | None = None,
    details: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> int:
    """Insert one event; returns its ``event_id``.

    Args:
        trigger: one of ``TRIGGERS``; decision: one of ``DECISIONS``.
        reason: one sentence for people (shown in the API, the UI and the CLI).
        run_key: the sensor's run key (``labels:<id>``, ``drift:<camera>:<id>``); a run
            launched for it fills in ``dagster_run_id`` later (``link_run``).
        created_at: default now (UTC).

    Raises:
        ValueError: an unknown trigger or decision.
    """
    if trigger not in TRIGGERS or decision not in DECISIONS:
        raise ValueError(
            f"retraining event needs a trigger in {TRIGGERS} and a decision in {DECISIONS}, "
            f"got {trigger!r}, {decision!r}"
        )
    event_id = fetch_scalar(
        con.execute(
            """
            INSERT INTO retraining_events
                (created_at, trigger, camera_id, decision, reason, labels_since_training,
                 run_key, dagster_run_id, details)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            RETURNING event_id
            """,
            [
                created_at or datetime.now(UTC),
                trigger,
                camera_id,
                decision,
                reason,
                labels_since_training,
                run_key,
                dagster_run_id,
                json.dumps(details or {}),
            ],
        )
    )
    return int(event_id)


def exists(*, con: Connection, run_key: str) -> bool:
    """True when an event with this run key is recorded (the sensors' idempotency check)."""
    count = fetch_scalar(
        con.execute("SELECT count(*) FROM retraining_events WHERE run_key = ?", [run_key])
    )
    return bool(count)


LAUNCH_LOCK = "edgeloop.retrain_launch"
"""The lock (``store.exclusive``) under which a label-count retrain is checked, launched
and recorded: the API's push and ``label_count_sensor`` take it, so one burst of labels
launches one run even with several API replicas and the sensor at the same moment."""


def label_count_run_key(newest_label_id: int) -> str:
    """``labels:<newest label id>``: the run key of a label-count retrain, the one
    ``pipelines/sensors.py``' ``label_count_sensor`` and the API's push trigger
    (``api/retrain_push.py``) both use, so one burst of labels gets one key."""
    return f"labels:{newest_label_id}"


def label_count_in_flight(*, con: Connection) -> dict[str, Any] | None:
    """The newest ``launched`` label-count event when its run has not finished yet
    (``run_status`` NULL: queued or not linked yet, or ``started``); None when there is no
    such event or its run succeeded or failed.

    The API's push trigger skips while one is in flight, as ``label_count_sensor`` skips
    while a ``retrain_job`` run is in progress. Keys: ``event_id``, ``created_at``,
    ``run_key``, ``dagster_run_id``, ``run_status``.
    """
    rows = fetch_dicts(
        con.execute(
            """
            SELECT event_id, created_at, run_key, dagster_run_id, run_status
            FROM retraining_events
            WHERE trigger = 'label_count' AND decision = 'launched'
            ORDER BY event_id DESC LIMIT 1
            """
        )
    )
    if rows and rows[0]["run_status"] in (None, "started"):
        return rows[0]
    return None


def last_retrain_at(*, con: Connection) -> datetime | None:
    """When the last retrain started (UTC): the newest ``launched`` event of any trigger, or
    the newest training run's start (a run started from the Dagster UI records no event),
    whichever is later; None when there was none. What the drift-retrain cooldown
    (``edgeloop.rules.retrain_decision``) counts from."""
    launched = fetch_scalar(
        con.execute("SELECT max(created_at) FROM retraining_events WHERE decision = 'launched'")
    )
    times = [t for t in (launched, training_runs.latest_started_at(con=con)) if t is not None]
    return max(times) if times else None


def link_run(*, con: Connection, run_key: str, dagster_run_id: str) -> None:
    """Fill in the Dagster run id of the events recorded under ``run_key`` (first run wins)."""
    con.execute(
        "UPDATE retraining_events SET dagster_run_id = ? "
        "WHERE run_key = ? AND dagster_run_id IS NULL",
        [dagster_run_id, run_key],
    )


def record_run(
    *,
    con: Connection,
    dagster_run_id: str,
    run_status: str,
    candidate_version: str | None = None,
    outcome: str | None = None,
) -> int:
    """Record what became of the run that events launched (``run_status`` in
    ``RUN_STATUSES``; the candidate version and outcome are kept once set). Returns the
    events updated (0 for a run no event launched, e.g. one started from the Dagster UI).

    Raises:
        ValueError: an unknown run status.
    """
    if run_status not in RUN_STATUSES:
        raise ValueError(f"run_status must be one of {RUN_STATUSES}, got {run_status!r}")
    updated = con.execute(
        """
        UPDATE retraining_events
        SET run_status = ?, candidate_version = coalesce(?, candidate_version),
            outcome = coalesce(?, outcome)
        WHERE dagster_run_id = ?
        RETURNING event_id
        """,
        [run_status, candidate_version, outcome, dagster_run_id],
    ).fetchall()
    return len(updated)


def recent(*, con: Connection, limit: int = 20) -> list[dict[str, Any]]:
    """The newest events first (``details`` left out)."""
    return fetch_dicts(
        con.execute(
            """
            SELECT event_id, created_at, trigger, camera_id, decision, reason,
                   labels_since_training, run_key, dagster_run_id, run_status,
                   candidate_version, outcome
            FROM retraining_events ORDER BY created_at DESC, event_id DESC LIMIT ?
            """,
            [limit],
        )
    )
