"""The API's retrain trigger against a real `dagster dev` (webserver + daemon) on loopback.

The API launches ``retrain_job`` through Dagster's GraphQL client over HTTP; the run must
then exist in the instance under ``DAGSTER_HOME`` with the trigger's tags, and the event
must be recorded in DuckDB with that run id. The label route's push trigger
(``api/retrain_push.py``) must do the same, once, for a burst of labels.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from dagster import DagsterInstance
from loopdata import make_loop

from edgeloop.cli.services import free_port, start_api, start_dagster
from edgeloop.settings import LoopSettings
from edgeloop.store import Store

pytestmark = pytest.mark.integration


def test_api_trigger_launches_retrain_job_in_a_real_dagster(
    loop_settings: LoopSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    dagster_port = free_port()
    tokens = {"admin-token": "admin"}
    with start_dagster(loop_settings, port=dagster_port, timeout_s=240) as dagster:
        with start_api(
            loop_settings,
            extra_env={
                "EDGELOOP_API_TOKENS": json.dumps(tokens),
                "EDGELOOP_API_WARM_REGISTRY": "false",
                "EDGELOOP_API_DAGSTER_URL": dagster.url,
            },
        ) as api:
            answer = httpx.post(
                f"{api.url}/api/retraining/trigger",
                headers={"Authorization": "Bearer admin-token"},
                json={"reason": "new camera installed"},
                timeout=120,
            )
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["dagster_run_id"]
        monkeypatch.setenv("DAGSTER_HOME", str((loop_settings.data_dir / "dagster").resolve()))
        instance = DagsterInstance.get()
        run = instance.get_run_by_id(run_id)
        assert run is not None
        assert run.job_name == "retrain_job"
        assert run.tags["edgeloop/trigger"] == "manual"
    with Store(loop_settings.duckdb_path).connect() as con:
        event = con.execute(
            "SELECT trigger, decision, dagster_run_id, reason FROM retraining_events"
        ).fetchall()
    assert event == [("manual", "launched", run_id, "new camera installed (by admin)")]


def test_a_burst_of_labels_pushes_exactly_one_retrain_run(
    loop_settings: LoopSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six labels at once past a threshold of 3 (the API's EDGELOOP_RETRAIN_LABEL_COUNT; the
    sensor keeps 50, so any run is the push's): one retrain_job run, tagged with the run key.
    Prints the latency from the threshold label's response to the run (not asserted)."""
    loop = make_loop(tmp_path)
    loop.queue(loop.add_frames("cam-a", count=6))
    labeler = {"Authorization": "Bearer labeler-token"}
    monkeypatch.setenv("DAGSTER_HOME", str((loop_settings.data_dir / "dagster").resolve()))
    waiting = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
    ]
    with (
        start_dagster(loop_settings, port=free_port(), timeout_s=240) as dagster,
        start_api(
            loop_settings,
            extra_env={
                "EDGELOOP_API_TOKENS": json.dumps({"labeler-token": "labeler"}),
                "EDGELOOP_API_WARM_REGISTRY": "false",
                "EDGELOOP_API_DAGSTER_URL": dagster.url,
                "EDGELOOP_RETRAIN_LABEL_COUNT": "3",
            },
        ) as api,
    ):
        # Opens the MLflow store the label route reads class names from (seconds, once).
        httpx.get(f"{api.url}/api/labeling-queue/next", headers=labeler, timeout=120)
        items = httpx.get(f"{api.url}/api/labeling-queue", headers=labeler, timeout=30)

        def label(item: dict[str, Any]) -> tuple[int, float]:
            answer = httpx.post(
                f"{api.url}/api/labeling-queue/{item['item_id']}/label",
                headers=labeler,
                json={"no_object": True},
                timeout=60,
            )
            assert answer.status_code == 201, answer.text
            return answer.json()["labels_since_training"], time.time()

        with ThreadPoolExecutor(max_workers=6) as pool:
            answered = dict(pool.map(label, items.json()["data"]))
        instance = DagsterInstance.get()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            runs = instance.get_run_records(dg.RunsFilter(job_name="retrain_job"))
            if any(r.dagster_run.status not in waiting for r in runs):
                break
            time.sleep(0.2)
    assert sorted(answered) == [1, 2, 3, 4, 5, 6]
    assert len(runs) == 1, [r.dagster_run.tags for r in runs]
    [record] = runs
    with Store(loop_settings.duckdb_path).connect() as con:
        events = con.execute(
            "SELECT run_key, dagster_run_id FROM retraining_events WHERE decision = 'launched'"
        ).fetchall()
    assert events == [(record.dagster_run.tags["dagster/run_key"], record.dagster_run.run_id)]
    assert record.dagster_run.tags["edgeloop/pushed"] == "api"
    threshold_at = answered[3]
    started = record.start_time - threshold_at if record.start_time else None
    print(
        f"\nthreshold label -> run in the instance: "
        f"{record.create_timestamp.timestamp() - threshold_at:.2f} s; -> run started: "
        + (f"{started:.2f} s" if started is not None else "not within the wait")
        + f" (status {record.dagster_run.status.value})"
    )
