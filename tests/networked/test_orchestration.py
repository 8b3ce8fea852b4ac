"""The scaled-out orchestration with real engines: the Dagster instance (runs, event logs,
sensor ticks) on PostgreSQL 15, the queued run coordinator and the sensors in the daemon of
``dagster dev``, steps executed by an ``edgeloop worker`` (Celery, Redis from Debian as the
broker) in a data folder of its own, the loop's tables on PostgreSQL.

Faults: the broker restarted; the process executing a retrain's step killed with SIGKILL
(as the kernel's OOM killer would): the run fails saying why, its retraining event says
so, the next label-count trigger launches again; the daemon restarted: its sensors tick
again and the run keys keep them from launching a retrain twice.

drift_job is the run the coordinator and the broker are timed and tested with (seconds of
work on 60 stored frames); the retrains here stop early (the frames have no JPEGs, so no
dataset can be built) or are killed: a retrain that trains on a worker of the training
queue is the scaled-out end-to-end loop's (``tests/e2e/test_demo_loop.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient
from loopdata import Loop, make_loop
from servers import Postgres, Redis, redis_server, require_server
from workers import celery_worker, celery_workers_by_step

from edgeloop.cli.services import Service, dagster_home, free_port, start_dagster
from edgeloop.orchestration import DEFAULT_QUEUE, DRIFT_JOB, JOB_TAG, TRAINING_QUEUE
from edgeloop.settings import LoopSettings
from edgeloop.store import retraining

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 240.0
"""Longest wait for a run to end, s (the worker loads the code location first)."""
RUN_KEY_TAG = "dagster/run_key"


@dataclass
class Site:
    loop: Loop
    settings: LoopSettings
    broker: Redis
    worker: subprocess.Popen[bytes]
    worker_log: Path
    dagster_database_url: str
    port: int


@pytest.fixture
def site(
    tmp_path: Path, postgres: Postgres, postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    import psycopg

    for server in ("postgres", "redis"):
        require_server(server)
    dagster_db = postgres_database.rsplit("/", 1)[1] + "_dg"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dagster_db}".encode())
    loop = make_loop(tmp_path, database_url=postgres_database)
    loop.add_frames("cam-1", count=60)
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(redis_server(tmp_path))
        env = {
            "EDGELOOP_DATABASE_URL": postgres_database,
            "EDGELOOP_DAGSTER_DATABASE_URL": postgres.url_for(dagster_db),
            "EDGELOOP_CELERY_BROKER_URL": broker.url,
            # 3 labels launch a retrain; the sensors tick every 5 s (Dagster's least).
            "EDGELOOP_RETRAIN_LABEL_COUNT": "3",
            "EDGELOOP_PIPELINES_SENSOR_INTERVAL_S": "5",
            # No scheduled run may take the worker while a step is to be killed.
            "EDGELOOP_PIPELINES_DRIFT_CRON": "0 0 1 1 *",
            "EDGELOOP_PIPELINES_LABELING_CRON": "0 0 1 1 *",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = LoopSettings(data_dir=loop.data_dir)
        monkeypatch.setenv("DAGSTER_HOME", str(dagster_home(settings)))
        queues = (DEFAULT_QUEUE, TRAINING_QUEUE)
        worker = stack.enter_context(celery_worker(tmp_path / "worker", *queues))
        log = tmp_path / "worker" / "worker.log"
        dagster_url = env["EDGELOOP_DAGSTER_DATABASE_URL"]
        yield Site(loop, settings, broker, worker, log, dagster_url, free_port())
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {dagster_db} WITH (FORCE)".encode())


def test_queued_runs_execute_on_a_worker_and_survive_faults(site: Site) -> None:
    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    queue = instance.get_concurrency_config().run_queue_config
    assert queue is not None
    assert {"key": JOB_TAG, "value": "retrain", "limit": 1} in queue.tag_concurrency_limits

    node = f"{DEFAULT_QUEUE}-{TRAINING_QUEUE}@{socket.gethostname()}"
    dagster: Service = start_dagster(site.settings, port=site.port)
    try:
        # 1. queued by the coordinator, launched by the daemon, executed on the worker
        first = _wait(instance, _launch(site))
        assert first.status == dg.DagsterRunStatus.SUCCESS
        latency = _start_latency_s(instance, first.run_id)
        print(f"run start latency (queued -> started): {latency:.2f} s")
        assert celery_workers_by_step(site.dagster_database_url)["drift_report"] == {node}

        # 2. the broker restarted: the worker and the executor reconnect, the next run works
        site.broker.restart(down_s=2.0)
        assert _wait(instance, _launch(site)).status == dg.DagsterRunStatus.SUCCESS

        # 3. 3 labels: label_count_sensor launches a retrain; the process executing its
        # first step is killed. The run fails saying why, its retraining event says so.
        received = _tasks_received(site.worker_log)
        killed_key = _label(site, 3)
        _until(
            lambda: _tasks_received(site.worker_log) > received, "the retrain reached the worker"
        )
        for pid in _step_processes(site.worker.pid):
            os.kill(pid, signal.SIGKILL)
        killed = _wait(instance, _run_for_key(instance, killed_key).run_id)
        assert killed.status == dg.DagsterRunStatus.FAILURE
        assert any("WorkerLostError" in str(entry) for entry in instance.all_logs(killed.run_id))
        _until(lambda: _event(site, killed_key)["run_status"] == "failed", "the event says failed")
        assert _event(site, killed_key)["dagster_run_id"] == killed.run_id

        # 4. the next trigger runs: 3 more labels launch a retrain under a new run key
        next_key = _label(site, 3)
        assert next_key != killed_key
        _wait(instance, _run_for_key(instance, next_key).run_id)  # ends: no JPEGs to train on

        # 5. the daemon restarted: the sensors tick again, and no run key launches twice
        dagster.stop()
        ticks = _label_sensor_ticks(instance)
        dagster = start_dagster(site.settings, port=site.port)
        assert _wait(instance, _launch(site)).status == dg.DagsterRunStatus.SUCCESS
        _until(lambda: _label_sensor_ticks(instance) > ticks, "label_count_sensor ticked again")
        for key in (killed_key, next_key):
            runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: key}))
            assert len(runs) == 1, f"{key}: {len(runs)} runs"
    finally:
        dagster.stop()


def _launch(site: Site) -> str:
    """Submit drift_job through Dagster's GraphQL API, as the API launches a retrain."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=site.port)
    return client.submit_job_execution(DRIFT_JOB, repository_location_name="pipelines")


def _until(condition: Callable[[], bool], what: str, timeout_s: float = RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not seen within {timeout_s:.0f} s: {what}")


def _wait(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    """The run, once it has ended."""
    _until(lambda: instance.get_run_by_id(run_id).is_finished, f"run {run_id} ended")  # type: ignore[union-attr]
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run


def _start_latency_s(instance: dg.DagsterInstance, run_id: str) -> float:
    """Seconds from the run's creation (queued) to its start (the daemon launched it)."""
    record = instance.get_run_record_by_id(run_id)
    assert record is not None and record.start_time is not None
    return record.start_time - record.create_timestamp.timestamp()


def _label(site: Site, count: int) -> str:
    """Label ``count`` unlabeled frames (one box each); returns the run key the label-count
    rule gives them (``labels:<newest label id>``)."""
    labeled = {label["frame_key"] for label in site.loop.frames if label.get("labeled")}
    frames = [f for f in site.loop.frames if f["frame_key"] not in labeled][:count]
    box = {"bbox_xyxy": [60.0, 120.0, 150.0, 340.0], "class_name": "Normal", "class_id": 0}
    for frame in frames:
        site.loop.label(frame["frame_key"], [box], at=datetime.now(UTC))
        frame["labeled"] = True
    with site.loop.store.connect() as con:
        newest = con.execute("SELECT max(label_id) FROM reviewed_labels").fetchall()[0][0]
    return retraining.label_count_run_key(int(newest))


def _run_for_key(instance: dg.DagsterInstance, run_key: str) -> dg.DagsterRun:
    """The run launched for ``run_key`` (waits for the sensor to launch it)."""
    run_filter = dg.RunsFilter(tags={RUN_KEY_TAG: run_key})
    _until(lambda: bool(instance.get_runs(filters=run_filter)), f"a run for {run_key}")
    (run,) = instance.get_runs(filters=run_filter)
    return run


def _event(site: Site, run_key: str) -> dict:
    """The retraining event recorded for ``run_key``."""
    with site.loop.store.connect() as con:
        events = retraining.recent(con=con, limit=50)
    return next(e for e in events if e["run_key"] == run_key)


def _tasks_received(worker_log: Path) -> int:
    """Steps the worker has taken so far (Celery logs each task it receives; its one pool
    process executes it at once)."""
    return worker_log.read_text(errors="replace").count("] received")


def _step_processes(worker_pid: int) -> list[int]:
    """The worker's child processes (Celery's pool, where steps execute)."""
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
    assert children, "the worker has no process executing steps"
    return [int(pid) for pid in children]


def _label_sensor_ticks(instance: dg.DagsterInstance) -> int:
    """How many ticks of label_count_sensor the instance has stored."""
    state = next(
        s for s in instance.all_instigator_state() if s.instigator_name == "label_count_sensor"
    )
    return len(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=10_000))
