"""Two stacks on one machine: an API launches runs only on its own stack's Dagster.

Two data folders, two real ``dagster dev`` (webserver + daemon, started as ``edgeloop up``
starts them), one real uvicorn API on stack A. Pointed at stack B's Dagster, A's API
refuses the manual trigger (409, naming both stacks) and the label-count push (logged),
and B's Dagster holds no run afterwards; pointed at its own Dagster, it launches, with
its stack id on the run.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopdata import make_loop

from edgeloop.cli.services import Service, free_port, start_api, start_dagster
from edgeloop.orchestration import STACK_TAG, stack_id
from edgeloop.settings import LoopSettings

pytestmark = pytest.mark.integration

TOKENS = {"admin-token": "admin", "labeler-token": "labeler"}
NO_OBJECT = {"no_object": True}
RUNS_QUERY = """
{ runsOrError { ... on Runs { results { runId jobName tags { key value } } } } }
"""


def _runs(dagster: Service) -> list[dict[str, Any]]:
    """The runs a Dagster webserver knows, from its GraphQL API."""
    answer = httpx.post(f"{dagster.url}/graphql", json={"query": RUNS_QUERY}, timeout=30)
    return list(answer.json()["data"]["runsOrError"]["results"])


def _api_env(dagster: Service) -> dict[str, str]:
    return {
        "EDGELOOP_API_TOKENS": json.dumps(TOKENS),
        "EDGELOOP_API_WARM_REGISTRY": "false",
        "EDGELOOP_API_DAGSTER_URL": dagster.url,
        "EDGELOOP_RETRAIN_LABEL_COUNT": "1",
    }


def _wait_for_log(api: Service, text: str, timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = api.log_tail(20_000)
        if text in log:
            return log
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in the API log:\n{api.log_tail()}")


def test_an_api_launches_only_on_its_own_stacks_dagster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME")  # each stack's Dagster keeps its own instance
    loop_a = make_loop(tmp_path / "a")
    loop_a.queue(loop_a.add_frames("cam-a", count=1))
    a = loop_a.settings
    b = LoopSettings(data_dir=tmp_path / "b" / "data")
    with ThreadPoolExecutor(max_workers=2) as pool:
        starting = [
            pool.submit(start_dagster, stack, port=free_port(), timeout_s=300) for stack in (a, b)
        ]
        dagster_a, dagster_b = (future.result() for future in starting)
    id_a, id_b = stack_id(a.data_dir), stack_id(b.data_dir)
    assert id_a != id_b
    admin = {"Authorization": "Bearer admin-token"}
    with dagster_a, dagster_b:
        with start_api(a, extra_env=_api_env(dagster_b)) as api:
            answer = httpx.post(f"{api.url}/api/retraining/trigger", headers=admin, timeout=120)
            assert answer.status_code == 409, answer.text
            detail = answer.json()["detail"]
            for part in (id_a, id_b, str(a.data_dir.resolve()), str(b.data_dir.resolve())):
                assert part in detail

            # The label that reaches the threshold (1) pushes a retrain: refused, logged.
            labeler = {"Authorization": "Bearer labeler-token"}
            with httpx.Client(base_url=api.url, headers=labeler, timeout=120) as http:
                [item] = http.get("/api/labeling-queue").json()["data"]
                label = http.post(f"/api/labeling-queue/{item['item_id']}/label", json=NO_OBJECT)
            assert label.status_code == 201, label.text
            log = _wait_for_log(api, "not launched")
            assert id_b in log and str(b.data_dir.resolve()) in log
        assert _runs(dagster_b) == []
        with loop_a.store.connect() as con:
            assert con.execute("SELECT count(*) FROM retraining_events").fetchone() == (0,)

        with start_api(
            a, extra_env=_api_env(dagster_a) | {"EDGELOOP_API_PUSH_RETRAIN": "false"}
        ) as api:
            answer = httpx.post(f"{api.url}/api/retraining/trigger", headers=admin, timeout=120)
        assert answer.status_code == 202, answer.text
        [run] = _runs(dagster_a)
        assert run["runId"] == answer.json()["dagster_run_id"]
        assert {t["key"]: t["value"] for t in run["tags"]}[STACK_TAG] == id_a
        assert _runs(dagster_b) == []
