"""Celery workers of the scaled-out orchestration, started for a test as a site starts them
(``edgeloop worker``), and what the Dagster instance says they executed."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from edgeloop.cli.services import spawn


@contextlib.contextmanager
def celery_worker(data_dir: Path, *queues: str) -> Iterator[subprocess.Popen[bytes]]:
    """``edgeloop worker --queue Q… --name Q-…`` in an empty data folder of its own (a
    host of its own: it shares nothing on disk with the demo), logging to
    ``data_dir/worker.log``; yields its process (Celery's main process, which forks the
    processes that execute steps); stopped (its process group) after."""
    data_dir.mkdir(parents=True)
    log_path = data_dir / "worker.log"
    env = dict(os.environ) | {"EDGELOOP_DATA_DIR": str(data_dir)}
    env.pop("DAGSTER_HOME", None)  # the worker writes its own instance file
    cmd = [sys.executable, "-m", "edgeloop.cli", "worker", "--name", "-".join(queues)]
    cmd += [arg for queue in queues for arg in ("--queue", queue)]
    worker = spawn("worker", cmd, env, log_path)
    try:
        yield worker.process
    finally:  # SIGTERM to its process group, SIGKILL after 30 s
        worker.stop(timeout_s=30)


def celery_workers_by_step(dagster_database_url: str) -> dict[str, set[str]]:
    """Step key -> the Celery worker nodes that executed it, read from the Dagster
    instance's event log in PostgreSQL (the "Celery worker" entry of the executor's engine
    events)."""
    import psycopg

    found: dict[str, set[str]] = {}
    with psycopg.connect(dagster_database_url) as con:
        rows = con.execute(
            "SELECT step_key, event FROM event_logs WHERE dagster_event_type = 'ENGINE_EVENT'"
            " AND event LIKE '%Celery worker%'"
        ).fetchall()
    for step_key, event in rows:
        entries = json.loads(event)["dagster_event"]["event_specific_data"]["metadata_entries"]
        for entry in entries:
            if entry["label"] == "Celery worker":
                found.setdefault(step_key, set()).add(entry["entry_data"]["text"])
    return found
