"""Change markers: one cheap value per subject that moves whenever its rows change, read in
one statement — what the console's live updates poll (``api/console/live.py``), once a
second per API process, on either backend (so several API replicas on one PostgreSQL see
every change, whichever replica or process wrote it).

Each marker is an indexed ``max`` (a primary key, or PostgreSQL's capture-time index on
``frames``), never a count: a read of every row each second would not stay cheap at a
million detections. A view over tables other modules own (``edgeloop.store`` lists them).
"""

from __future__ import annotations

from edgeloop.store.connection import Connection

MARKERS: dict[str, str] = {
    "detections": "SELECT max(captured_at) FROM frames",
    "heartbeats": "SELECT max(received_at) FROM agent_heartbeats",
    "queue": "SELECT max(item_id) FROM labeling_queue",
    "labels": "SELECT max(label_id) FROM reviewed_labels",
    "retraining": "SELECT max(event_id) FROM retraining_events",
    "aliases": "SELECT max(deployment_id) FROM model_deployments",
    "drift": "SELECT max(computed_at) FROM drift_reports",
    "alerts": "SELECT max(alert_id) FROM drift_alerts",
    "alert_updates": "SELECT max(updated_at) FROM drift_alerts",
    "verdicts": "SELECT max(reviewed_at) FROM review_verdicts",
}
"""Subject -> the query of its marker. A detection batch moves ``detections`` (frames are
stored with their detections), a label ``labels``, an alert raised, acknowledged or cleared
``alerts``/``alert_updates``, a promotion or rollback ``aliases``, a grid review's verdicts
(a frame flipped to missed stores no label) ``verdicts``."""


def markers(*, con: Connection) -> dict[str, str]:
    """Every subject's marker now, as text (``MARKERS``; "None" for an empty table)."""
    selects = ", ".join(f"({sql}) AS {name}" for name, sql in MARKERS.items())
    row = con.execute(f"SELECT {selects}").fetchall()[0]
    return {name: str(value) for name, value in zip(MARKERS, row, strict=True)}
