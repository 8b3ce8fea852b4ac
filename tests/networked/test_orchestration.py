"""The scaled-out orchestration with real engines: the Dagster instance (runs, event logs,
sensor ticks) on PostgreSQL 15, the queued run coordinator in the daemon of ``dagster dev``,
steps executed by an ``edgeloop worker`` (Celery, Redis from Debian as the broker) in a
data folder of its own, the loop's tables on PostgreSQL. Faults: the broker restarted, the
process executing a step killed (as the kernel's OOM killer would), the daemon restarted.

drift_job is the run here (a few seconds of work on 60 stored frames); the retrain's
steps on the training queue's worker are checked by the scaled-out end-to-end loop
(``tests/e2e/test_demo_loop.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient
from loopdata import make_loop
from servers import Postgres, Redis, redis_server, require_server
from workers import celery_worker, celery_workers_by_step

from edgeloop.cli.services import Service, dagster_home, free_port, start_dagster
from edgeloop.orchestration import DEFAULT_QUEUE, DRIFT_JOB, JOB_TAG
from edgeloop.settings import LoopSettings

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 240.0
"""Longest wait for one drift_job run to end, s (the worker loads the code location first)."""


@dataclass
class Site:
    settings: LoopSettings
    broker: Redis
    worker: object
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
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = LoopSettings(data_dir=loop.data_dir)
        monkeypatch.setenv("DAGSTER_HOME", str(dagster_home(settings)))
        worker = stack.enter_context(celery_worker(tmp_path / "worker", DEFAULT_QUEUE))
        log = tmp_path / "worker" / "worker.log"
        dagster_url = env["EDGELOOP_DAGSTER_DATABASE_URL"]
        yield Site(settings, broker, worker, log, dagster_url, free_port())
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {dagster_db} WITH (FORCE)".encode())


def _launch(site: Site) -> str:
    """Submit drift_job through Dagster's GraphQL API, as the API launches a retrain."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=site.port)
    return client.submit_job_execution(DRIFT_JOB, repository_location_name="pipelines")


def _wait(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        if run.is_finished:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not end within {RUN_TIMEOUT_S} s")


def _start_latency_s(instance: dg.DagsterInstance, run_id: str) -> float:
    """Seconds from the run's creation (queued) to its start (the daemon launched it)."""
    record = instance.get_run_record_by_id(run_id)
    assert record is not None and record.start_time is not None
    return record.start_time - record.create_timestamp.timestamp()


def _step_processes(worker_pid: int) -> list[int]:
    """The worker's child processes (Celery's pool, where steps execute)."""
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def test_queued_runs_execute_on_a_worker_and_survive_faults(site: Site) -> None:
    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    queue = instance.get_concurrency_config().run_queue_config
    assert queue is not None
    assert {"key": JOB_TAG, "value": "retrain", "limit": 1} in queue.tag_concurrency_limits

    node = f"{DEFAULT_QUEUE}@{socket.gethostname()}"
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

        # 3. the process executing a step killed: the run fails, saying why; the next works
        received = _tasks_received(site.worker_log)
        run_id = _launch(site)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline and _tasks_received(site.worker_log) == received:
            time.sleep(0.05)
        pids = _step_processes(site.worker.pid)  # type: ignore[attr-defined]
        assert pids, "the worker has no process executing the step"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        failed = _wait(instance, run_id)
        assert failed.status == dg.DagsterRunStatus.FAILURE
        assert instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        # The executor says why: Celery's pool lost the process that ran the step.
        assert any("WorkerLostError" in str(entry) for entry in instance.all_logs(run_id))
        assert _wait(instance, _launch(site)).status == dg.DagsterRunStatus.SUCCESS

        # 4. the daemon restarted: its sensors tick again on the same instance
        dagster.stop()
        ticks_before = len(instance.get_ticks(*_sensor_origin(instance), limit=1000))
        dagster = start_dagster(site.settings, port=site.port)
        assert _wait(instance, _launch(site)).status == dg.DagsterRunStatus.SUCCESS
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if len(instance.get_ticks(*_sensor_origin(instance), limit=1000)) > ticks_before:
                break
            time.sleep(1)
        else:
            raise AssertionError("the label-count sensor did not tick after the restart")
    finally:
        dagster.stop()


def _tasks_received(worker_log: Path) -> int:
    """Steps the worker has taken so far (Celery logs each task it receives; its one pool
    process executes it at once)."""
    return worker_log.read_text(errors="replace").count("] received")


def _sensor_origin(instance: dg.DagsterInstance) -> tuple[str, str]:
    """(origin id, selector id) of label_count_sensor's stored state."""
    state = next(
        s for s in instance.all_instigator_state() if s.instigator_name == "label_count_sensor"
    )
    return state.instigator_origin_id, state.selector_id
