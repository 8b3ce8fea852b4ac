"""The API's retrain trigger against a real `dagster dev` (webserver + daemon) on loopback.

The API launches ``retrain_job`` through Dagster's GraphQL client over HTTP; the run must
then exist in the instance under ``DAGSTER_HOME`` with the trigger's tags, and the event
must be recorded in DuckDB with that run id.
"""

from __future__ import annotations

import json

import httpx
import pytest
from dagster import DagsterInstance

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
