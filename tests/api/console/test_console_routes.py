"""The console's routes: every panel's JSON data checked against the rows inserted, the
HTML fragments, roles (admin controls only for admins, 403 for the rest), heartbeats, and
the pages, static files and vendored libraries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api_support import ADMIN, AGENT, LABELER
from console_support import (
    Fleet,
    add_drift,
    add_frames,
    add_move,
    add_retrain_run,
    heartbeat,
    label_pending,
    store_heartbeat,
)
from fastapi.testclient import TestClient

from api.console.routes import PANELS, PanelName
from api.settings import ApiSettings
from edgeloop.settings import LoopSettings
from edgeloop.store import Store, agents, deployments

STATIC = Path(__file__).resolve().parents[3] / "api" / "console" / "static"


def test_every_panel_has_a_page_and_the_pages_name_every_panel(client: TestClient) -> None:
    assert list(PANELS) == list(PanelName.__args__)
    for panel in PANELS:
        page = client.get(f"/console/{panel}")
        assert page.status_code == 200
        assert f'hx-get="/console/{panel}/fragment' in page.text
        assert 'href="/"' in page.text  # the labeling page stays at / and is linked
    assert client.get("/console/nope").status_code == 422
    redirect = client.get("/console", follow_redirects=False)
    assert (redirect.status_code, redirect.headers["location"]) == (307, "/console/fleet")
    assert client.get("/").status_code == 200  # the labeling page is still at /


def test_vendored_libraries_are_served_with_their_licences(client: TestClient) -> None:
    for path in ("vendor/htmx/htmx.min.js", "vendor/uplot/uPlot.iife.min.js", "console.js"):
        response = client.get(f"/console/static/{path}")
        assert response.status_code == 200, path
        assert len(response.content) > 1000
    assert "htmx" in client.get("/console/static/vendor/htmx/htmx.min.js").text
    for licence in ("vendor/htmx/LICENSE", "vendor/uplot/LICENSE"):
        assert (STATIC / licence).stat().st_size > 100
    readme = (STATIC / "vendor" / "README.md").read_text()
    assert "2.0.11" in readme and "1.6.32" in readme
    assert client.get("/console/static/%2E%2E/routes.py").status_code == 404
    assert client.get("/console/static/nope.js").status_code == 404


def test_data_and_fragments_need_a_token(client: TestClient) -> None:
    for panel in PANELS:
        assert client.get(f"/console/api/{panel}").status_code == 401
        assert client.get(f"/console/{panel}/fragment").status_code == 401
    assert client.get("/console/api/me", headers=LABELER).json() == {
        "name": "labeler",
        "role": "labeler",
    }


def test_fleet_rows_match_heartbeats_and_frames(client: TestClient, store: Store) -> None:
    now = datetime.now(UTC)
    fleet = Fleet()
    start = now - timedelta(minutes=4)
    add_frames(store, fleet, "cam-1", start=start, confidences=[[0.9, 0.5], [0.55], [0.95]])
    add_frames(
        store,
        fleet,
        "cam-2",
        start=start,
        confidences=[[0.8]] * 2,
        model_version="2",
        inference_ms=40.0,
    )
    # A frame outside the 5-minute window counts for nothing.
    add_frames(store, fleet, "cam-1", start=now - timedelta(minutes=20), confidences=[[0.5] * 9])
    add_move(store, version="1", action="register")
    store_heartbeat(store, heartbeat("cam-1"), received_at=now - timedelta(seconds=3))
    store_heartbeat(
        store,
        heartbeat("cam-3", model_version="2", model_precision="int8"),
        received_at=now - timedelta(minutes=5),
    )
    data = client.get("/console/api/fleet", headers=LABELER).json()
    rows = {r["camera_id"]: r for r in data["cameras"]}
    assert list(rows) == ["cam-1", "cam-2", "cam-3"]
    assert data["production_version"] == "1"
    cam1, cam2, cam3 = rows["cam-1"], rows["cam-2"], rows["cam-3"]
    assert cam1["state"] == "online" and cam1["heartbeat_age_s"] < 30
    assert cam3["state"] == "stale" and cam3["heartbeat_age_s"] >= 300
    assert cam2["state"] == "no heartbeat" and cam2["agent_id"] == "agent-cam-2"
    assert (cam1["frames_per_s"], cam1["inference_ms_p50"], cam1["inference_ms_p95"]) == (
        9.5,
        31.5,
        48.25,
    )
    assert cam1["inference_source"] == "heartbeat"
    assert (cam2["inference_ms_p50"], cam2["inference_source"]) == (40.0, "frames")
    assert cam1["frames_in_window"] == 3
    assert cam1["detections_per_min"] == pytest.approx(4 / 5)
    assert cam1["uncertain_share"] == pytest.approx(2 / 4)
    assert (cam1["spool_batches"], cam1["spool_bytes"]) == (2, 65_536)
    assert (cam1["model_version"], cam1["is_production"]) == ("1", True)
    assert (cam2["model_version"], cam2["is_production"]) == ("2", False)
    assert (cam1["host"], cam1["agent_version"]) == ("host-cam-1", "0.1.0")
    assert (cam1["execution_provider"], cam2["execution_provider"]) == (
        "CPUExecutionProvider",
        None,
    )
    assert (cam1["model_precision"], cam3["model_precision"]) == (None, "int8")
    html = client.get("/console/fleet/fragment", headers=LABELER).text
    assert 'data-field="execution_provider" title="CPUExecutionProvider">on CPU<' in html
    assert html.count('data-field="model_precision"') == 1  # cam-3 runs the int8 model
    assert 'data-field="model_precision" title="an int8' in html
    assert 'data-camera="cam-3"' in html and "stale" in html
    assert "31.5 / 48.2" in html or "31.5 / 48.3" in html


def test_a_camera_whose_agent_waits_for_its_stream_shows_as_source_down(
    client: TestClient, store: Store
) -> None:
    """An agent whose camera could not be opened yet (it waits, ``stream_wait_at_start``)
    has sent heartbeats but no frame: the fleet lists the camera, online, source down."""
    now = datetime.now(UTC)
    waiting = heartbeat(
        "gate-2",
        model_version="local-a7b2fda450e0",  # the agent's own model file: not a registry version
        source_connected=False,
        frames_processed=0,
        frames_per_s=0.0,
        inference_ms_p50=None,
        inference_ms_p95=None,
    )
    store_heartbeat(store, waiting, received_at=now - timedelta(seconds=2))
    [row] = client.get("/console/api/fleet", headers=LABELER).json()["cameras"]
    assert (row["camera_id"], row["state"], row["source_connected"]) == ("gate-2", "online", False)
    assert row["frames_in_window"] == 0 and row["last_frame_at"] is None
    html = client.get("/console/fleet/fragment", headers=LABELER).text
    assert 'data-camera="gate-2"' in html and "source down" in html
    assert "local-a7b2fda450e0" in html and "vlocal" not in html


def test_analytics_matches_the_rows_in_range(client: TestClient, store: Store) -> None:
    now = datetime.now(UTC)
    fleet = Fleet()
    start = now - timedelta(minutes=30)
    add_frames(
        store,
        fleet,
        "cam-1",
        start=start,
        confidences=[[0.9, 0.5], [], [0.45, 0.95]],
        every=timedelta(minutes=1),
        class_names=[["Normal", "Fall"], [], ["Normal", "Normal"]],
    )
    add_frames(store, fleet, "cam-2", start=now - timedelta(hours=3), confidences=[[0.9]])
    data = client.get("/console/api/analytics?range=1h", headers=LABELER).json()
    assert data["bucket_s"] == 60
    summary = {s["camera_id"]: s for s in data["summary"]}
    assert list(summary) == ["cam-1"]  # cam-2's frame is 3 h old
    cam1 = summary["cam-1"]
    assert (cam1["frames"], cam1["detections"], cam1["uncertain"]) == (3, 4, 2)
    assert cam1["defect_rate"] == pytest.approx(2 / 3)
    assert cam1["uncertain_share"] == pytest.approx(2 / 4)
    assert cam1["detections_per_min"] == pytest.approx(4 / 60)
    assert sum(data["confidence_histogram"]) == 4
    assert len(data["confidence_edges"]) == len(data["confidence_histogram"]) + 1
    assert {m["class_name"]: m["detections"] for m in data["class_mix"]} == {"Normal": 3, "Fall": 1}
    series = data["series"][0]
    assert series["detections_per_min"] == [2.0, 0.0, 2.0]
    assert series["uncertain_share"] == [0.5, None, 0.5]
    assert data["cameras"] == ["cam-1", "cam-2"]
    wide = client.get("/console/api/analytics?range=6h&camera_id=cam-2", headers=LABELER).json()
    assert [s["camera_id"] for s in wide["summary"]] == ["cam-2"]
    html = client.get("/console/analytics/fragment?range=1h", headers=LABELER).text
    assert 'data-field="defect_rate">66.7 %' in html


def test_drift_history_thresholds_and_report_link(
    client: TestClient, store: Store, api_settings: ApiSettings
) -> None:
    now = datetime.now(UTC)
    report = api_settings.loop.reports_dir / "drift" / "cam-1.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>evidently</html>")
    add_drift(store, "cam-1", at=now - timedelta(days=10), p_values={"brightness": 0.5})
    add_drift(
        store, "cam-1", at=now - timedelta(hours=2), p_values={"brightness": 0.2, "contrast": 0.4}
    )
    add_drift(
        store,
        "cam-1",
        at=now - timedelta(hours=1),
        p_values={"brightness": 0.001, "contrast": 0.3},
        report_path=str(report),
    )
    data = client.get("/console/api/drift?range=7d", headers=LABELER).json()
    assert (data["drift_share_threshold"], data["p_value_threshold"]) == (0.3, 0.05)
    assert data["features"] == ["brightness", "contrast"]
    (camera,) = data["cameras"]
    assert [p["drift_share"] for p in camera["points"]] == [0.0, 0.5]  # the 10-day-old is out
    assert camera["latest"]["drifted"] is True
    assert camera["latest"]["report_url"] == "/reports/drift/cam-1.html"
    opened = client.get(camera["latest"]["report_url"], headers=LABELER)
    assert opened.status_code == 200 and "evidently" in opened.text
    html = client.get("/console/drift/fragment", headers=LABELER).text
    assert 'href="/reports/drift/cam-1.html"' in html and "drifted" in html


def test_queue_sizes_oldest_item_and_throughput(client: TestClient, store: Store) -> None:
    now = datetime.now(UTC)
    fleet = Fleet()
    add_frames(store, fleet, "cam-1", start=now - timedelta(hours=2), confidences=[[0.5]] * 5)
    add_frames(store, fleet, "cam-2", start=now - timedelta(hours=1), confidences=[[0.6]] * 2)
    label_pending(store, count=2, labeler="alice", at=now - timedelta(minutes=10))
    label_pending(store, count=1, labeler="bob", at=now - timedelta(minutes=5))
    data = client.get("/console/api/queue", headers=LABELER).json()
    assert data["totals"]["pending"] == 4 and data["totals"]["labeled"] == 3
    assert {c["camera_id"]: c["pending"] + c["labeled"] for c in data["cameras"]} == {
        "cam-1": 5,
        "cam-2": 2,
    }
    assert data["oldest_pending"]["camera_id"] == "cam-1"
    assert data["oldest_pending"]["age_s"] > 3600
    assert [(x["labeler"], x["labels"]) for x in data["labelers"]] == [("alice", 2), ("bob", 1)]
    # alice's 2 labels share one timestamp: no span, no rate (not 2 / 24 h).
    assert (data["labelers"][0]["span_s"], data["labelers"][0]["labels_per_hour"]) == (0, None)
    html = client.get("/console/queue/fragment", headers=LABELER).text
    assert 'data-field="pending">4<' in html


def test_retraining_panel_events_links_and_trigger_control(
    client: TestClient, store: Store
) -> None:
    now = datetime.now(UTC)
    fleet = Fleet()
    add_frames(store, fleet, "cam-1", start=now - timedelta(hours=1), confidences=[[0.5]] * 3)
    label_pending(store, count=3, labeler="alice", at=now - timedelta(minutes=1))
    add_retrain_run(
        store,
        labels=50,
        dagster_run_id="run-abc123456",
        candidate_version="2",
        outcome="promoted v2 to production (was v1)",
    )
    data = client.get("/console/api/retraining", headers=LABELER).json()
    assert data["labels_since_training"] == 3 and data["label_threshold"] == 50
    assert data["retrain_due"] is False
    (event,) = data["events"]
    assert (event["trigger"], event["run_status"], event["outcome"]) == (
        "label_count",
        "succeeded",
        "promoted v2 to production (was v1)",
    )
    assert event["dagster_run_url"] == "http://127.0.0.1:3000/runs/run-abc123456"
    labeler_html = client.get("/console/retraining/fragment", headers=LABELER).text
    admin_html = client.get("/console/retraining/fragment", headers=ADMIN).text
    assert 'href="http://127.0.0.1:3000/runs/run-abc123456"' in labeler_html
    assert "admin-action" not in labeler_html and "/api/retraining/trigger" not in labeler_html
    assert 'data-url="/api/retraining/trigger"' in admin_html
    # The trigger enforces the role; with no Dagster listening an admin gets a clear 503.
    assert client.post("/api/retraining/trigger", json={}, headers=LABELER).status_code == 403
    assert client.post("/api/retraining/trigger", json={}, headers=ADMIN).status_code == 503


def test_models_panel_without_a_registry_still_shows_the_alias_history(
    client: TestClient, store: Store
) -> None:
    now = datetime.now(UTC)
    add_move(store, version="1", action="register", actor="init", reason="seed")
    add_move(store, version="2", actor="alice", reason="better mAP", previous_version="1")
    fleet = Fleet()
    add_frames(
        store,
        fleet,
        "cam-1",
        start=now - timedelta(minutes=2),
        confidences=[[0.9]],
        model_version="2",
    )
    data = client.get("/console/api/models", headers=LABELER).json()
    assert data["production_version"] == "2"
    assert data["registry_error"] is not None  # the stub registry cannot be listed
    assert [(d["version"], d["actor"], d["reason"]) for d in data["deployments"]] == [
        ("2", "alice", "better mAP"),
        ("1", "init", "seed"),
    ]
    assert data["cameras"] == [
        {
            "camera_id": "cam-1",
            "model_version": "2",
            "source": "frames",
            "last_frame_at": data["cameras"][0]["last_frame_at"],
        }
    ]
    html = client.get("/console/models/fragment", headers=ADMIN).text
    assert 'data-field="actor">alice<' in html


def test_promote_needs_admin_and_a_valid_version(client: TestClient) -> None:
    body = {"reason": "looks better"}
    assert client.post("/api/models/2/promote", json=body, headers=LABELER).status_code == 403
    assert client.post("/api/models/2/promote", json=body, headers=AGENT).status_code == 403
    assert client.post("/api/models/2/promote", json=body).status_code == 401
    assert client.post("/api/models/x1/promote", json=body, headers=ADMIN).status_code == 422
    assert client.post("/api/models/2/promote", json={}, headers=ADMIN).status_code == 422


def test_inspections_page_filters_and_boxes(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    fleet = Fleet()
    jpeg = tmp_path / "f.jpg"
    jpeg.write_bytes(b"\xff\xd8not really\xff\xd9")
    add_frames(
        store,
        fleet,
        "cam-1",
        start=now - timedelta(minutes=10),
        confidences=[[0.9, 0.5, 0.3], [0.55]],
        jpeg_paths=[str(jpeg), None],
    )
    add_frames(
        store,
        fleet,
        "cam-2",
        start=now - timedelta(minutes=5),
        confidences=[[0.95]],
        jpeg_paths=[str(jpeg)],
    )
    # By default only frames with a stored JPEG: cam-1's first frame and cam-2's.
    data = client.get("/console/api/inspections?limit=2", headers=LABELER).json()
    assert data["count"] == 4 and len(data["data"]) == 2 and data["with_jpeg_only"] is True
    assert data["data"][0]["camera_id"] == "cam-2"  # newest first
    page2 = client.get("/console/api/inspections?limit=2&offset=2", headers=LABELER).json()
    assert {d["detection_id"] for d in page2["data"] + data["data"]} == {
        d["detection_id"] for d in fleet.detections if not d["frame_key"].endswith(":00001")
    }
    everything = client.get(
        "/console/api/inspections?include_no_image=true", headers=LABELER
    ).json()
    assert everything["count"] == len(fleet.detections) == 5
    uncertain = client.get(
        "/console/api/inspections?camera_id=cam-1&band=uncertain&include_no_image=true",
        headers=LABELER,
    ).json()
    assert sorted(d["confidence"] for d in uncertain["data"]) == [0.5, 0.55]
    # Confident: at or above the band's upper bound (0.7), never the 0.3 below the band.
    confident = client.get("/console/api/inspections?band=confident", headers=LABELER).json()
    assert sorted(d["confidence"] for d in confident["data"]) == [0.9, 0.95]
    assert confident["uncertainty_band"] == [0.4, 0.7]
    low = client.get("/console/api/inspections?band=low", headers=LABELER).json()
    assert [d["confidence"] for d in low["data"]] == [0.3]
    first = next(
        d
        for d in page2["data"] + data["data"]
        if d["camera_id"] == "cam-1" and d["detection_id"].endswith(":00000:0")
    )
    x1, y1, x2, y2 = first["bbox_xyxy"]
    assert first["box_pct"] == pytest.approx(
        [100 * x1 / 768, 100 * y1 / 576, 100 * (x2 - x1) / 768, 100 * (y2 - y1) / 576]
    )
    assert first["frame_url"] is not None
    html = client.get("/console/inspections/fragment?camera_id=cam-1", headers=LABELER).text
    assert html.count('class="thumb"') == 3 and f'src="{first["frame_url"]}"' in html
    assert "no image" not in html.replace("without an image", "")
    with_missing = client.get(
        "/console/inspections/fragment?camera_id=cam-1&include_no_image=true", headers=LABELER
    ).text
    assert with_missing.count('class="thumb"') == 4
    assert "no image: its agent sends a frame's JPEG only when it has an uncertain" in with_missing
    for bad in ("limit=0", "limit=201", "offset=-1", "band=maybe", "camera_id="):
        assert client.get(f"/console/api/inspections?{bad}", headers=LABELER).status_code == 422


def test_settings_panel_shows_sources_and_never_a_token(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGELOOP_PIPELINES_DETECTOR_MODEL__EPOCHS", "5")
    data = client.get("/console/api/settings", headers=LABELER).json()
    rows = {f"{r['group']}.{r['name']}": r for r in data["data"]}
    assert rows["loop.data_dir"]["source"] == "env EDGELOOP_DATA_DIR"
    assert rows["loop.uncertainty_low"]["source"] == "default"
    assert rows["loop.uncertainty_low"]["value"] == "0.4"
    assert rows["loop.dagster_ui_url"]["value"] == "http://127.0.0.1:3000"
    assert rows["api.tokens"]["source"] == "argument"
    assert rows["api.tokens"]["value"] == "(hidden: 3 set)"
    assert rows["pipelines.detector_model.epochs"]["value"] == "5"
    text = client.get("/console/settings/fragment", headers=LABELER).text
    for token in ("agent-token", "labeler-token", "admin-token"):
        assert token not in text and token not in str(data)


def test_settings_panel_shows_every_pipelines_setting_that_edgeloop_up_published(
    client: TestClient, loop_settings: LoopSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API may not import the code location: `edgeloop up` publishes its settings, as
    the Dagster processes it starts read them, and the panel shows every one."""
    from edgeloop.cli.settings_snapshot import publish_pipeline_settings

    before = client.get("/console/api/settings", headers=LABELER).json()["data"]
    assert not [r for r in before if r["group"] == "pipelines"]  # nothing set, nothing published
    monkeypatch.setenv("EDGELOOP_PIPELINES_DETECTOR_MODEL__EPOCHS", "7")
    publish_pipeline_settings(loop_settings, by="edgeloop up")
    monkeypatch.delenv("EDGELOOP_PIPELINES_DETECTOR_MODEL__EPOCHS")  # what Dagster got counts

    data = client.get("/console/api/settings", headers=LABELER).json()
    rows = {r["name"]: r for r in data["data"] if r["group"] == "pipelines"}
    epochs = rows["detector_model.epochs"]
    assert (epochs["value"], epochs["source"]) == (
        "7",
        "env EDGELOOP_PIPELINES_DETECTOR_MODEL__EPOCHS",
    )
    assert epochs["env_var"] == "EDGELOOP_PIPELINES_DETECTOR_MODEL__EPOCHS"
    assert (rows["sensor_interval_s"]["value"], rows["sensor_interval_s"]["source"]) == (
        "30",
        "default",
    )
    assert "model_promotion.min_heldout_images" in rows and "drift_report.window_frames" in rows
    assert any("edgeloop up started Dagster" in note for note in data["notes"])


def test_heartbeat_post_and_list(client: TestClient, store: Store) -> None:
    beat = heartbeat("cam-1", model_precision="int8").model_dump(mode="json")
    assert client.post("/api/agents/heartbeat", json=beat, headers=AGENT).status_code == 204
    assert client.post("/api/agents/heartbeat", json=beat, headers=ADMIN).status_code == 204
    assert client.post("/api/agents/heartbeat", json=beat, headers=LABELER).status_code == 403
    assert (
        client.post(
            "/api/agents/heartbeat", json=beat | {"frames_per_s": -1}, headers=AGENT
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/api/agents/heartbeat", json=beat | {"model_precision": "int4"}, headers=AGENT
        ).status_code
        == 422
    )
    # An agent from before the fields sends no execution_provider or model_precision:
    # accepted, listed as null.
    older = {k: v for k, v in heartbeat("cam-2").model_dump(mode="json").items()}
    del older["execution_provider"], older["model_precision"]
    assert client.post("/api/agents/heartbeat", json=older, headers=ADMIN).status_code == 204
    listed = client.get("/api/agents", headers=LABELER).json()["data"]
    assert [
        (a["agent_id"], a["frames_per_s"], a["execution_provider"], a["model_precision"])
        for a in listed
    ] == [
        ("agent-cam-1", 9.5, "CPUExecutionProvider", "int8"),
        ("agent-cam-2", 9.5, None, None),
    ]
    received = datetime.fromisoformat(listed[0]["received_at"])
    assert abs((datetime.now(UTC) - received).total_seconds()) < 30  # the API's clock
    with store.connect() as con:
        assert len(agents.latest(con=con)) == 2


def test_heartbeat_refused_for_a_camera_the_token_may_not_send(
    loop_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.main import create_app
    from edgeloop.tokens import create_token

    tokens_file = loop_settings.data_dir / "api-tokens.json"
    scoped = create_token(tokens_file, name="edge-1", role="agent", cameras=["cam-1"])
    app = create_app(ApiSettings(loop=loop_settings, tokens_file=tokens_file, warm_registry=False))
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {scoped}"}
        ok = heartbeat("cam-1").model_dump(mode="json")
        other = heartbeat("cam-2").model_dump(mode="json")
        assert client.post("/api/agents/heartbeat", json=ok, headers=headers).status_code == 204
        refused = client.post("/api/agents/heartbeat", json=other, headers=headers)
        assert refused.status_code == 403 and "cam-2" in refused.json()["detail"]


def test_promote_with_a_real_registry_records_the_move(
    client: TestClient, app, store: Store, api_settings: ApiSettings, tmp_path: Path
) -> None:
    from registry_support import register_versions

    from api.deps import get_registry
    from api.model_registry import ModelRegistry

    register_versions(api_settings.loop, tmp_path, count=2)  # v1 production, v2 registered
    app.dependency_overrides.pop(get_registry)
    app.state.registry = ModelRegistry(api_settings.loop)
    data = client.get("/console/api/models", headers=LABELER).json()
    assert data["registry_error"] is None
    assert [(v["version"], v["aliases"]) for v in data["versions"]] == [
        ("2", []),
        ("1", ["production"]),
    ]
    assert "promote" not in client.get(
        "/console/models/fragment", headers=LABELER
    ).text.lower().replace("promotion", "")
    admin_html = client.get("/console/models/fragment", headers=ADMIN).text
    assert 'data-url="/api/models/2/promote"' in admin_html
    assert 'data-url="/api/models/1/promote"' not in admin_html  # already production
    promoted = client.post("/api/models/2/promote", json={"reason": "fewer misses"}, headers=ADMIN)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {
        "model_name": "edgeloop-detector",
        "production_version": "2",
        "previous_version": "1",
    }
    with store.connect() as con:
        move = deployments.recent(con=con, limit=1)[0]
    assert (move["version"], move["action"], move["actor"], move["reason"]) == (
        "2",
        "promote",
        "admin",
        "fewer misses",
    )
    assert move["previous_version"] == "1"
    again = client.post("/api/models/2/promote", json={"reason": "again"}, headers=ADMIN)
    assert again.status_code == 409
    missing = client.post("/api/models/99/promote", json={"reason": "x"}, headers=ADMIN)
    assert missing.status_code == 404
    assert client.get("/console/api/models", headers=LABELER).json()["production_version"] == "2"


def test_a_versions_evaluation_is_its_own_not_its_newest_alias_moves(
    client: TestClient, app, store: Store, api_settings: ApiSettings, tmp_path: Path
) -> None:
    from registry_support import register_versions

    from api.deps import get_registry
    from api.model_registry import ModelRegistry
    from edgeloop.registry import mlflow_client

    v1, v2 = register_versions(api_settings.loop, tmp_path, count=2)
    # What model_evaluation tags a candidate with (assets.evaluation_report.log_evaluation).
    tags = {
        "heldout_mAP50": "0.712000",
        "heldout_mAP50-95": "0.448000",
        "heldout_production_version": v1,
        "heldout_images": "40",
        "heldout_gain_mAP50-95": "+0.0170 [-0.0040, +0.0380]",
        "corrections_learned": "0.30 (3/10)",
        "regressions": "0.05 (1/20)",
        "box_regressions": "0.00 (0/30)",
    }
    registry = mlflow_client(api_settings.loop)
    for key, value in tags.items():
        registry.set_model_version_tag(api_settings.loop.model_name, v2, key, value)
    app.dependency_overrides.pop(get_registry)
    app.state.registry = ModelRegistry(api_settings.loop)
    for move in ("promote", "rollback", "promote"):
        url = (
            f"/api/models/{v2}/promote" if move == "promote" else "/api/models/production/rollback"
        )
        assert client.post(url, json={"reason": move}, headers=ADMIN).status_code == 200
    with store.connect() as con:
        assert deployments.recent(con=con, limit=1)[0]["metrics"] == {"promoted_from": v1}
    data = client.get("/console/api/models", headers=LABELER).json()
    by_version = {v["version"]: v for v in data["versions"]}
    evaluation = by_version[v2]["evaluation"]
    assert evaluation["source"] == "MLflow version tags"
    assert evaluation["metrics"] == {"mAP50": 0.712, "mAP50-95": 0.448}
    assert (evaluation["compared_with"], evaluation["heldout_images"]) == (v1, 40)
    assert evaluation["gains"] == {"mAP50-95": "+0.0170 [-0.0040, +0.0380]"}
    assert (evaluation["corrections_learned"], evaluation["regressions"]) == (
        "0.30 (3/10)",
        "0.05 (1/20)",
    )
    assert by_version[v1]["evaluation"] is None  # the seed was never a candidate
    html = client.get("/console/models/fragment", headers=LABELER).text
    assert "mAP50 0.7120; mAP50-95 0.4480; gain mAP50-95 +0.0170" in html
    assert 'data-field="corrections_learned">0.30 (3/10)' in html
    assert "promoted_from" not in html


def test_p_values_read_in_scientific_notation_when_small(client: TestClient, store: Store) -> None:
    now = datetime.now(UTC)
    add_drift(
        store, "cam-1", at=now - timedelta(hours=1), p_values={"brightness": 1.7e-76, "x": 0.3}
    )
    html = client.get("/console/drift/fragment", headers=LABELER).text
    assert 'data-field="min_p_value">1.7e-76<' in html
    assert "brightness p=1.7e-76" in html and "x p=0.3<" in html and "0.0000" not in html
