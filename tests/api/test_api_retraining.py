"""Retraining conditions, the drift endpoint, and the manual trigger (Dagster GraphQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_support import ADMIN, LABELER, TOKENS, NoModelRegistry, own_stack
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.deps import get_dagster_client, get_registry
from api.main import create_app
from api.settings import ApiSettings
from edgeloop.rules import DRIFT_RETRAIN_COOLDOWN_H, DRIFT_RETRAIN_MIN_LABELS, RETRAIN_LABEL_COUNT
from edgeloop.settings import LoopSettings
from edgeloop.store import Store, retraining

pytestmark = pytest.mark.backends

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _insert_drift(
    store: Store,
    camera_id: str,
    *,
    drift_share: float,
    min_p: float | None,
    at: datetime,
    report_path: str | None = None,
) -> None:
    with store.connect() as con:
        con.execute(
            "INSERT INTO drift_reports (camera_id, computed_at, reference_frames, current"
            "_frames, drift_share, min_p_value, drifted, p_values, report_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                camera_id,
                at,
                200,
                100,
                drift_share,
                min_p,
                drift_share > 0.3,
                json.dumps({"brightness": min_p, "contrast": 0.4}),
                report_path,
            ],
        )


def _insert_labels(store: Store, n: int, at: datetime) -> None:
    with store.connect() as con:
        for i in range(n):
            con.execute(
                "INSERT INTO reviewed_labels (item_id, frame_key, camera_id, boxes, box_count, labeler, labeled_at) "
                "VALUES (?, ?, 'cam-1', '[]', 0, 'alice', ?)",
                [i, f"cam-1:{i}", at + timedelta(seconds=i)],
            )


def test_drift_endpoint_reads_the_latest_report_per_camera(
    client: TestClient, store: Store, loop_settings: LoopSettings
) -> None:
    report = loop_settings.reports_dir / "drift" / "cam-1.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html><body>drift report of cam-1</body></html>")
    _insert_drift(store, "cam-1", drift_share=0.1, min_p=0.5, at=T0)
    _insert_drift(
        store,
        "cam-1",
        drift_share=0.5,
        min_p=0.001,
        at=T0 + timedelta(hours=1),
        report_path=str(report),
    )
    _insert_drift(store, "cam-2", drift_share=0.25, min_p=0.2, at=T0)

    body = client.get("/api/metrics/drift", headers=LABELER).json()
    by_camera = {d["camera_id"]: d for d in body["data"]}
    assert set(by_camera) == {"cam-1", "cam-2"}
    cam1 = by_camera["cam-1"]
    assert cam1["drift_share"] == 0.5
    assert cam1["drifted"] is True
    assert cam1["p_values"] == {"brightness": 0.001, "contrast": 0.4}
    assert cam1["report_url"] == "/reports/drift/cam-1.html"
    assert by_camera["cam-2"]["drifted"] is False
    assert by_camera["cam-2"]["report_url"] is None

    html = client.get(cam1["report_url"], headers=LABELER)
    assert html.status_code == 200
    assert "drift report of cam-1" in html.text
    assert client.get(cam1["report_url"]).status_code == 401
    # Nothing outside the reports folder is served (an encoded ../ reaches the route as-is).
    (loop_settings.data_dir / "secret.txt").write_text("not a report")
    escaped = client.get("/reports/%2E%2E/secret.txt", headers=LABELER)
    assert escaped.status_code == 404
    assert "not a report" not in escaped.text


def test_conditions_without_labels_or_drift(client: TestClient) -> None:
    body = client.get("/api/retraining/conditions", headers=LABELER).json()
    assert body["labels_since_training"] == 0
    assert body["label_threshold"] == RETRAIN_LABEL_COUNT
    assert body["retrain_due"] is False
    assert body["drifted_cameras"] == []
    assert any("below the threshold of 50" in r for r in body["reasons"])


def test_conditions_due_at_the_label_threshold(client: TestClient, store: Store) -> None:
    with store.connect() as con:  # an earlier training run used the labels up to T0
        con.execute(
            "INSERT INTO training_runs VALUES ('run-1', ?, ?, 10, 'v1', '1', NULL)", [T0, T0]
        )
    _insert_labels(store, 10, T0 - timedelta(days=1))  # already trained on
    _insert_labels(store, RETRAIN_LABEL_COUNT, T0 + timedelta(minutes=1))
    body = client.get("/api/retraining/conditions", headers=LABELER).json()
    assert body["labels_since_training"] == RETRAIN_LABEL_COUNT
    assert body["retrain_due"] is True
    assert body["reasons"][0].startswith(f"{RETRAIN_LABEL_COUNT} reviewed labels")


def test_drift_without_new_labels_reprioritises_instead(client: TestClient, store: Store) -> None:
    _insert_drift(store, "cam-3", drift_share=0.2, min_p=0.01, at=T0)
    body = client.get("/api/retraining/conditions", headers=LABELER).json()
    assert body["drifted_cameras"] == ["cam-3"]
    assert body["retrain_due"] is False
    assert any("reprioritise" in r for r in body["reasons"])


def test_drift_retrains_only_with_enough_new_labels(client: TestClient, store: Store) -> None:
    """Five labels on a drifted camera launched a full retrain (issue 20): a drift retrain
    needs EDGELOOP_DRIFT_RETRAIN_MIN_LABELS (20) new labels; the conditions say so."""
    _insert_drift(store, "cam-3", drift_share=0.2, min_p=0.01, at=T0)
    _insert_labels(store, 5, T0)
    body = client.get("/api/retraining/conditions", headers=LABELER).json()
    assert (body["drift_min_labels"], body["drift_cooldown_h"]) == (
        DRIFT_RETRAIN_MIN_LABELS,
        DRIFT_RETRAIN_COOLDOWN_H,
    )
    assert (body["last_retrain_at"], body["drift_cooldown_until"]) == (None, None)
    assert body["retrain_due"] is False
    assert any(
        f"only 5 new reviewed label(s) since the last training, below the "
        f"{DRIFT_RETRAIN_MIN_LABELS} a drift retrain needs" in r
        for r in body["reasons"]
    )

    _insert_labels(store, DRIFT_RETRAIN_MIN_LABELS, T0 + timedelta(minutes=1))  # 5 relabeled
    body = client.get("/api/retraining/conditions", headers=LABELER).json()
    assert body["labels_since_training"] == DRIFT_RETRAIN_MIN_LABELS
    assert body["retrain_due"] is True
    assert any(
        f"drift on camera(s) cam-3 and {DRIFT_RETRAIN_MIN_LABELS} new label(s)" in r
        for r in body["reasons"]
    )


def test_no_drift_retrain_within_the_cooldown_of_the_last_retrain(
    client: TestClient, store: Store
) -> None:
    _insert_drift(store, "cam-3", drift_share=0.5, min_p=0.001, at=T0)
    _insert_labels(store, 30, T0)
    launched = datetime.now(UTC) - timedelta(hours=1)
    with store.connect() as con:
        retraining.record(
            con=con,
            trigger="drift",
            camera_id="cam-3",
            decision="launched",
            reason="camera cam-3 drifted",
            labels_since_training=30,
            created_at=launched,
        )
    body = client.get("/api/retraining/conditions", headers=LABELER).json()
    assert body["retrain_due"] is False
    assert datetime.fromisoformat(body["last_retrain_at"]) == launched
    until = launched + timedelta(hours=DRIFT_RETRAIN_COOLDOWN_H)
    assert datetime.fromisoformat(body["drift_cooldown_until"]) == until
    assert any("cooldown" in r and "reprioritise" in r for r in body["reasons"])


def test_the_drift_retrain_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, loop_settings: LoopSettings, store: Store
) -> None:
    monkeypatch.setenv("EDGELOOP_DRIFT_RETRAIN_MIN_LABELS", "5")
    monkeypatch.setenv("EDGELOOP_DRIFT_RETRAIN_COOLDOWN_H", "0")
    loop = LoopSettings(data_dir=loop_settings.data_dir, database_url=loop_settings.database_url)
    settings = ApiSettings(loop=loop, tokens=TOKENS)  # type: ignore[arg-type]
    app = create_app(settings)
    app.dependency_overrides[get_registry] = NoModelRegistry
    _insert_drift(store, "cam-3", drift_share=0.5, min_p=0.001, at=T0)
    _insert_labels(store, 5, T0)
    with TestClient(app) as client:
        body = client.get("/api/retraining/conditions", headers=LABELER).json()
    assert (body["drift_min_labels"], body["drift_cooldown_h"]) == (5, 0)
    assert body["retrain_due"] is True


def test_trigger_without_dagster_is_503_saying_make_up(client: TestClient, store: Store) -> None:
    response = client.post("/api/retraining/trigger", headers=ADMIN)
    assert response.status_code == 503
    assert "make up" in response.json()["detail"]
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM retraining_events").fetchone() == (0,)


class RecordingLauncher:
    """Stands in for Dagster (unit test): answers ``metadata`` for the job, records the
    launch, returns a run id."""

    def __init__(self, metadata: dict[str, str]) -> None:
        self.metadata = metadata
        self.calls: list[dict[str, Any]] = []

    def job_metadata(self, job_name: str, **selector: str) -> dict[str, str]:
        assert (job_name, selector["repository_location_name"]) == ("retrain_job", "pipelines")
        return self.metadata

    def submit_job_execution(self, job_name: str, **kwargs: Any) -> str:
        self.calls.append({"job_name": job_name, **kwargs})
        return "run-abc123"


def test_trigger_launches_retrain_job_and_records_the_event(
    app: FastAPI, client: TestClient, store: Store
) -> None:
    launcher = RecordingLauncher(own_stack(app))
    app.dependency_overrides[get_dagster_client] = lambda: launcher
    response = client.post("/api/retraining/trigger", json={"reason": "new site"}, headers=ADMIN)
    assert response.status_code == 202, response.text
    assert response.json()["dagster_run_id"] == "run-abc123"
    assert launcher.calls == [
        {
            "job_name": "retrain_job",
            "repository_location_name": "pipelines",
            "repository_name": "__repository__",
            "tags": {
                "edgeloop/trigger": "manual",
                "edgeloop/actor": "admin",
                "edgeloop/stack": own_stack(app)["edgeloop/stack"],
            },
        }
    ]
    with store.connect() as con:
        event = con.execute(
            "SELECT trigger, decision, reason, dagster_run_id FROM retraining_events"
        ).fetchone()
    assert event == ("manual", "launched", "new site (by admin)", "run-abc123")
    events = client.get("/api/retraining/conditions", headers=LABELER).json()["recent_events"]
    assert events[0]["dagster_run_id"] == "run-abc123"


def test_trigger_refuses_another_stacks_dagster_and_launches_nothing(
    app: FastAPI, client: TestClient, store: Store
) -> None:
    """The Dagster at the API's address serves another data folder: 409, naming both."""
    other = {"edgeloop/stack": "0123456789abcdef0123456789abcdef", "edgeloop/data_dir": "/srv/b"}
    launcher = RecordingLauncher(other)
    app.dependency_overrides[get_dagster_client] = lambda: launcher
    response = client.post("/api/retraining/trigger", headers=ADMIN)
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    ours = own_stack(app)
    for part in (
        other["edgeloop/stack"],
        "/srv/b",
        ours["edgeloop/stack"],
        ours["edgeloop/data_dir"],
    ):
        assert part in detail
    assert "EDGELOOP_API_DAGSTER_URL" in detail
    assert launcher.calls == []
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM retraining_events").fetchone() == (0,)


def test_trigger_refuses_a_code_location_that_names_no_stack(
    app: FastAPI, client: TestClient
) -> None:
    launcher = RecordingLauncher({})
    app.dependency_overrides[get_dagster_client] = lambda: launcher
    response = client.post("/api/retraining/trigger", headers=ADMIN)
    assert response.status_code == 409, response.text
    assert "does not say which stack" in response.json()["detail"]
    assert launcher.calls == []


def test_trigger_with_an_unreadable_stack_id_is_a_clear_409(
    app: FastAPI, client: TestClient, loop_settings: LoopSettings
) -> None:
    if loop_settings.database_url:
        pytest.skip("a networked site keeps its stack id in the database, not in a file")
    launcher = RecordingLauncher(own_stack(app))
    app.dependency_overrides[get_dagster_client] = lambda: launcher
    (loop_settings.data_dir / "stack-id").write_text("")  # emptied by hand
    response = client.post("/api/retraining/trigger", headers=ADMIN)
    assert response.status_code == 409, response.text
    assert "stack id cannot be read" in response.json()["detail"]
    assert launcher.calls == []
