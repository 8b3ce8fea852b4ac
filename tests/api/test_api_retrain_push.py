"""The push trigger: the label that reaches the threshold asks Dagster for retrain_job once."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from api_support import LABELER, NoModelRegistry, ingest, own_stack, queued_frame
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.deps import get_registry
from api.main import create_app
from api.retrain_push import get_push_launcher
from api.settings import ApiSettings
from edgeloop.settings import LoopSettings
from edgeloop.store import Store, retraining

pytestmark = pytest.mark.backends

THRESHOLD = 3


@pytest.fixture
def loop_settings(isolated_data_dir: Path) -> LoopSettings:
    """A threshold of 3 labels (EDGELOOP_RETRAIN_LABEL_COUNT), so a few labels reach it."""
    return LoopSettings(data_dir=isolated_data_dir, retrain_label_count=THRESHOLD)


class FakeLauncher:
    """Stands in for Dagster: answers ``metadata`` for the job (the app's own stack unless
    given), records each submit (thread-safe), slowly enough that unserialised pushes would
    overlap, and returns run ids run-1, run-2, ..."""

    def __init__(
        self,
        delay_s: float = 0.0,
        error: Exception | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.calls: list[dict[str, Any]] = []
        self.delay_s = delay_s
        self.error = error
        self.metadata = metadata
        self._lock = threading.Lock()

    def job_metadata(self, job_name: str, **selector: str) -> dict[str, str]:
        assert self.metadata is not None, "use _use(app, launcher)"
        return self.metadata

    def submit_job_execution(self, job_name: str, **kwargs: Any) -> str:
        time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        with self._lock:
            self.calls.append({"job_name": job_name, **kwargs})
            return f"run-{len(self.calls)}"


def _use(app: FastAPI, launcher: FakeLauncher) -> FakeLauncher:
    if launcher.metadata is None:
        launcher.metadata = own_stack(app)
    app.dependency_overrides[get_push_launcher] = lambda: launcher
    return launcher


def _queue(client: TestClient, n: int) -> list[int]:
    """``n`` pending queue items, by item id."""
    ingest(client, *(queued_frame(f"cam-1:{i}", i) for i in range(n)))
    body = client.get(f"/api/labeling-queue?limit={n}", headers=LABELER).json()
    return sorted(item["item_id"] for item in body["data"])


def _label(client: TestClient, item_id: int, *, edit: bool = False) -> dict[str, Any]:
    response = client.post(
        f"/api/labeling-queue/{item_id}/label",
        json={"no_object": True, "edit": edit},
        headers=LABELER,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _events(store: Store) -> list[tuple[Any, ...]]:
    with store.connect() as con:
        return con.execute(
            "SELECT trigger, decision, labels_since_training, run_key, dagster_run_id "
            "FROM retraining_events ORDER BY event_id"
        ).fetchall()


def _newest_label_id(store: Store) -> int:
    with store.connect() as con:
        return int(con.execute("SELECT max(label_id) FROM reviewed_labels").fetchone()[0])


def test_the_threshold_label_launches_retrain_job_once(
    app: FastAPI, client: TestClient, store: Store
) -> None:
    launcher = _use(app, FakeLauncher())
    items = _queue(client, THRESHOLD + 2)
    for item_id in items[: THRESHOLD - 1]:
        _label(client, item_id)
    assert launcher.calls == []
    assert _events(store) == []

    assert _label(client, items[THRESHOLD - 1])["labels_since_training"] == THRESHOLD
    run_key = f"labels:{_newest_label_id(store)}"
    assert launcher.calls == [
        {
            "job_name": "retrain_job",
            "repository_location_name": "pipelines",
            "repository_name": "__repository__",
            "tags": {
                "dagster/run_key": run_key,
                "edgeloop/trigger": "label_count",
                "edgeloop/pushed": "api",
                "edgeloop/labels": str(THRESHOLD),
                "edgeloop/stack": own_stack(app)["edgeloop/stack"],
            },
        }
    ]
    assert _events(store) == [("label_count", "launched", THRESHOLD, run_key, "run-1")]

    # Labels past the threshold while that run is in flight launch nothing more.
    for item_id in items[THRESHOLD:]:
        _label(client, item_id)
    assert len(launcher.calls) == 1

    # Once it failed (the run-failure sensor records that), the next label pushes again.
    with store.connect() as con:
        retraining.record_run(con=con, dagster_run_id="run-1", run_status="failed")
    _label(client, items[0], edit=True)  # an edit: the count stays, the newest label id moves
    assert len(launcher.calls) == 2
    assert launcher.calls[1]["tags"]["dagster/run_key"] == f"labels:{_newest_label_id(store)}"


def test_a_burst_of_parallel_labels_launches_exactly_one_run(
    app: FastAPI, client: TestClient, store: Store
) -> None:
    launcher = _use(app, FakeLauncher(delay_s=0.2))
    items = _queue(client, 20 + THRESHOLD)
    for item_id in items[: THRESHOLD - 1]:
        _label(client, item_id)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda item_id: _label(client, item_id), items[THRESHOLD - 1 :]))
    assert sorted(a["labels_since_training"] for a in answers) == list(
        range(THRESHOLD, THRESHOLD + 21)
    )
    assert len(launcher.calls) == 1
    [(trigger, decision, _, run_key, run_id)] = _events(store)
    assert (trigger, decision, run_id) == ("label_count", "launched", "run-1")
    assert run_key == launcher.calls[0]["tags"]["dagster/run_key"]


def test_a_run_the_sensor_launched_is_not_launched_again(
    app: FastAPI, client: TestClient, store: Store
) -> None:
    launcher = _use(app, FakeLauncher())
    items = _queue(client, THRESHOLD)
    for item_id in items[:-1]:
        _label(client, item_id)
    with store.connect() as con:  # label_count_sensor's event: launched, run not linked yet
        retraining.record(
            con=con,
            trigger="label_count",
            decision="launched",
            reason="the sensor got there first",
            labels_since_training=THRESHOLD,
            run_key="labels:1",
        )
    _label(client, items[-1])
    assert launcher.calls == []


def test_dagster_down_the_label_is_stored_and_nothing_is_recorded(
    client: TestClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The real GraphQL client against a port nothing listens on (the fixture's URL)."""
    items = _queue(client, THRESHOLD)
    with caplog.at_level(logging.WARNING, logger="api.retrain_push"):
        answers = [_label(client, item_id) for item_id in items]
    assert answers[-1]["labels_since_training"] == THRESHOLD
    assert _events(store) == []
    assert any(
        "is unreachable" in r.getMessage() and "label_count_sensor will launch" in r.getMessage()
        for r in caplog.records
    )


def test_dagster_refusing_the_launch_records_nothing(
    app: FastAPI, client: TestClient, store: Store
) -> None:
    _use(app, FakeLauncher(error=RuntimeError("job retrain_job not found in location")))
    for item_id in _queue(client, THRESHOLD):
        _label(client, item_id)
    assert _events(store) == []


def test_another_stacks_dagster_gets_no_push_and_the_refusal_is_logged(
    app: FastAPI, client: TestClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    other = {"edgeloop/stack": "0123456789abcdef0123456789abcdef", "edgeloop/data_dir": "/srv/b"}
    launcher = _use(app, FakeLauncher(metadata=other))
    items = _queue(client, THRESHOLD)
    with caplog.at_level(logging.WARNING, logger="api.retrain_push"):
        answers = [_label(client, item_id) for item_id in items]
    assert answers[-1]["labels_since_training"] == THRESHOLD  # the label itself is stored
    assert launcher.calls == []
    assert _events(store) == []
    [warning] = [r.getMessage() for r in caplog.records if "not launched" in r.getMessage()]
    assert other["edgeloop/stack"] in warning and "/srv/b" in warning
    assert own_stack(app)["edgeloop/stack"] in warning


def test_the_push_can_be_turned_off(api_settings: ApiSettings, store: Store) -> None:
    app = create_app(api_settings.model_copy(update={"push_retrain": False}))
    app.dependency_overrides[get_registry] = NoModelRegistry
    launcher = _use(app, FakeLauncher())
    with TestClient(app) as client:
        for item_id in _queue(client, THRESHOLD + 1):
            _label(client, item_id)
    assert launcher.calls == []
    assert _events(store) == []
