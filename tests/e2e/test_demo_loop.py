"""The whole loop on a short slice of the real video: `edgeloop demo` as a user runs it.

Real uvicorn API, the real agent process on vtest.avi and bikes.mp4, the real DuckDB file,
MLflow store, DVC data repo, Qdrant folder and Dagster instance. Kept inside CI's time by
processing fewer frames and fine-tuning one small epoch.

It runs twice: embedded (everything in the data folder), and scaled out on the networked
engines: the tables in PostgreSQL 15; an MLflow tracking server on another PostgreSQL
database; the Dagster instance (runs, event logs, ticks) on a third; the frame JPEGs, drift
reports, MLflow artifacts (the ONNX the camera downloads), crop-index versions, dataset
versions (DVC remote and git bundles) and Dagster's asset values in S3 (moto); two API
replicas behind nginx; and the retrains' steps executed by two Celery workers (Redis as the
broker), one on the default queue and one on the training queue, each in an empty folder
of its own, apart from the folder the demo's runs, agent and reviewer work in; all started
here from packages.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import Postgres, nginx_server, redis_server, require_server, s3_server
from support import SAMPLES_DIR, SEED_PT, require
from workers import celery_worker, celery_workers_by_step

from edgeloop.cli.services import free_port, start_api, start_mlflow_ui
from edgeloop.cli.status import collect_status
from edgeloop.orchestration import DEFAULT_QUEUE, TRAINING_QUEUE
from edgeloop.settings import LoopSettings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@dataclass
class Topology:
    """The loop's settings (the Dagster host's, where the demo runs), the environment that
    names its engines, and the API the agent and the reviewer use (None: the demo's own)."""

    settings: LoopSettings
    engines: dict[str, str]
    api_url: str | None = None


@pytest.fixture(params=["embedded", "networked"])
def topology(
    request: pytest.FixtureRequest, loop_settings: LoopSettings, tmp_path: Path
) -> Iterator[Topology]:
    """Embedded: the demo starts its API on the data folder. Networked: two API replicas,
    each with an empty data folder of its own, behind nginx; the demo (the Dagster runs, the
    agent and the reviewer) works in a third folder; what they share is in PostgreSQL and
    S3, and the API tokens file, which a site mounts into each replica as a secret."""
    if request.param == "embedded":
        yield Topology(loop_settings, {})
        return
    import psycopg

    for server in ("postgres", "s3", "nginx", "redis"):
        require_server(server)
    postgres: Postgres = request.getfixturevalue("postgres")
    tables = request.getfixturevalue("postgres_database")
    mlflow_db, dagster_db = (tables.rsplit("/", 1)[1] + suffix for suffix in ("_mlflow", "_dg"))
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        for database in (mlflow_db, dagster_db):
            admin.execute(f"CREATE DATABASE {database}".encode())
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(s3_server(tmp_path / "s3"))
        s3.client().create_bucket(Bucket="edgeloop-demo")  # type: ignore[attr-defined]
        broker = stack.enter_context(redis_server(tmp_path))
        site = {"EDGELOOP_OBJECT_STORE_URL": "s3://edgeloop-demo/site"} | s3.environment()
        os.environ.update(site)  # the MLflow server's settings and boto3 read them
        stack.callback(lambda: [os.environ.pop(key, None) for key in site])
        tracking = stack.enter_context(
            start_mlflow_ui(
                LoopSettings(
                    data_dir=tmp_path / "mlflow-host",
                    mlflow_tracking_uri=postgres.url_for(mlflow_db).replace(
                        "postgresql://", "postgresql+psycopg://"
                    ),
                ),
                port=free_port(),
            )
        )
        env = site | {
            "EDGELOOP_DATABASE_URL": tables,
            "EDGELOOP_MLFLOW_TRACKING_URI": tracking.url,
            "EDGELOOP_DAGSTER_DATABASE_URL": postgres.url_for(dagster_db),
            "EDGELOOP_CELERY_BROKER_URL": broker.url,
            "EDGELOOP_API_TOKENS_FILE": str(tmp_path / "secrets" / "api-tokens.json"),
        }
        for key, value in env.items():
            os.environ[key] = value  # collect_status reads settings and boto3 the same way
        stack.callback(lambda: [os.environ.pop(key, None) for key in env])
        for queue in (DEFAULT_QUEUE, TRAINING_QUEUE):
            stack.enter_context(celery_worker(tmp_path / f"worker-{queue}", queue))
        replicas = [
            stack.enter_context(
                start_api(
                    LoopSettings(
                        data_dir=tmp_path / f"replica-{i}",
                        database_url=tables,
                        object_store_url=env["EDGELOOP_OBJECT_STORE_URL"],
                    )
                )
            )
            for i in range(2)
        ]
        ports = [int(r.url.rsplit(":", 1)[1]) for r in replicas]
        balancer = stack.enter_context(nginx_server(tmp_path, ports))
        yield Topology(LoopSettings(data_dir=loop_settings.data_dir), env, balancer.url)
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        for database in (mlflow_db, dagster_db):
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)".encode())


def test_demo_closes_the_loop_on_real_video(topology: Topology) -> None:
    loop_settings, engines = topology.settings, topology.engines
    require(SAMPLES_DIR / "vtest.avi")
    require(SEED_PT)
    # The media were fetched by `make data`; link them instead of fetching again.
    for folder, source in (("samples", SAMPLES_DIR), ("seed", SEED_PT.parent)):
        shutil.copytree(source, loop_settings.data_dir / folder, copy_function=os.link)
    env = dict(os.environ)
    env.update(
        {
            "EDGELOOP_DATA_DIR": str(loop_settings.data_dir),
            "DAGSTER_HOME": str(loop_settings.data_dir / "dagster"),
            "EDGELOOP_PIPELINES_DRIFT_REPORT__WINDOW_FRAMES": "35",
            # The drift retrain's guards, relaxed so that 5 labels right after the first
            # retrain launch one (by default: 20 labels, 6 h after the last retrain).
            "EDGELOOP_DRIFT_RETRAIN_MIN_LABELS": "5",
            "EDGELOOP_DRIFT_RETRAIN_COOLDOWN_H": "0",
            "COLUMNS": "200",
        }
        | engines
    )
    cmd = [sys.executable, "-m", "edgeloop.cli", "demo", "--frames", "70", "--drift-frames", "40"]
    cmd += ["--labels", "55", "--drift-labels", "5", "--epochs", "1", "--imgsz", "320"]
    if topology.api_url:
        cmd += ["--api-url", topology.api_url]
    # From outside the checkout: the CLI finds its Dagster files in the package.
    workdir = loop_settings.data_dir.parent
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1500)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "simulated reviewer" in output
    assert '{"ok": true}' in output
    assert "Traceback" not in output
    assert "nanobind: leaked" not in output  # a DuckDB connection kept alive past close

    if topology.api_url:  # scaled out: what one run hands the next is in object storage
        objects = loop_settings.objects()
        assert "dagster/storage/training_dataset" in set(objects.keys("dagster/storage/"))
        assert "datasets/git/v1.bundle" in set(objects.keys("datasets/git/"))
        # The retrains' steps ran on the Celery workers: the fine-tune on the training
        # queue's worker, the dataset build on the default queue's (Dagster's own engine
        # events name the worker; the instance is the PostgreSQL database).
        workers = celery_workers_by_step(engines["EDGELOOP_DAGSTER_DATABASE_URL"])
        assert workers["detector_model"] == {f"{TRAINING_QUEUE}@{socket.gethostname()}"}
        assert workers["model_evaluation"] == workers["detector_model"]
        assert workers["training_dataset"] == {f"{DEFAULT_QUEUE}@{socket.gethostname()}"}

    state = collect_status(loop_settings)
    cam = next(c for c in state["cameras"] if c["camera_id"] == "cam-campus")
    # 70 + 40 frames from the two passes, and more from the live camera during the retrain.
    assert cam["frames"] > 70 + 40
    assert cam["detections"] > 0
    # The label-count sensor's retrain trained v2; the drift sensor's (5 new labels after
    # the scene change) trained v3. training_runs is newest first.
    assert [r["model_version"] for r in state["training_runs"]] == ["3", "2"]
    # Every alias move is recorded; the first is the seed's, and production is where the
    # newest production move put it (whatever the policy decided for v2 and v3).
    moves = state["deployments"]
    assert (moves[-1]["alias"], moves[-1]["version"]) == ("production", "1")
    last_production_move = next(m for m in moves if m["alias"] == "production")
    assert state["models"]["production"]["version"] == last_production_move["version"]
    versions = {v["version"]: v for v in state["model_versions"]}
    for candidate in ("2", "3"):
        assert versions[candidate]["promotion"], f"v{candidate} has no promotion outcome"
        assert set(versions[candidate]["metrics"]) >= {"mAP50", "mAP50-95"}
        assert set(versions[candidate]["evidence"]) >= {"heldout_images", "heldout_gain_mAP50-95"}
    # The summary says which model the camera ran, and when.
    assert "models on camera cam-campus" in output
    assert "delivery to the camera" in output
    # The scene change made the drift sensor fire for the camera and launch the retrain.
    drift = next(d for d in state["drift"] if d["camera_id"] == "cam-campus")
    assert drift["drifted"]
    events = [e for e in state["retraining_events"] if e["trigger"] == "drift"]
    assert [e["decision"] for e in events] == ["launched"]
    assert events[0]["dagster_run_id"]
    label_events = [e for e in state["retraining_events"] if e["trigger"] == "label_count"]
    assert [e["decision"] for e in label_events] == ["launched"]
    # Each launching event records what became of its run.
    assert (label_events[0]["run_status"], label_events[0]["candidate_version"]) == (
        "succeeded",
        "2",
    )
    assert (events[0]["run_status"], events[0]["candidate_version"]) == ("succeeded", "3")
    assert label_events[0]["outcome"] == versions["2"]["promotion"]

    status = subprocess.run(
        [sys.executable, "-m", "edgeloop.cli", "status", "--json"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    as_json = json.loads(status.stdout)
    assert as_json["labels_total"] == 55 + 5
    assert as_json["retrain_label_count"] == 50
