"""Health, per-camera metrics, Prometheus exposition and the inspection logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from api_support import AGENT, LABELER, detection, frame, ingest, queued_frame
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from api.settings import ApiSettings

pytestmark = pytest.mark.backends

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


def _fill(client: TestClient) -> None:
    ingest(
        client,
        frame(
            "cam-1:1",
            index=1,
            captured_at=T0,
            inference_ms=20,
            detections=[detection(1, 1, 50, 50, 0.05), detection(1, 1, 60, 60, 0.55)],
        ),
        frame("cam-1:2", index=2, captured_at=T0 + timedelta(seconds=1), inference_ms=30),
        frame(
            "cam-2:1",
            camera_id="cam-2",
            captured_at=T0 + timedelta(seconds=2),
            detections=[detection(5, 5, 40, 40, 1.0, "Fall")],
        ),
    )
    ingest(client, queued_frame("cam-1:3", 3, captured_at=T0 + timedelta(seconds=3)))


def test_health_counts(client: TestClient) -> None:
    _fill(client)
    body = client.get("/api/health", headers=LABELER).json()
    assert body["counts"] == {
        "frames": 4,
        "detections": 5,
        "queue_pending": 1,
        "reviewed_labels": 0,
    }
    assert body["errors"] == []


def test_metrics_per_camera(client: TestClient) -> None:
    _fill(client)
    body = client.get("/api/metrics", headers=LABELER).json()
    cameras = {c["camera_id"]: c for c in body["cameras"]}
    cam1 = cameras["cam-1"]
    assert cam1["frames"] == 3
    assert cam1["detections"] == 4
    assert cam1["defect_rate"] == pytest.approx(2 / 3)
    assert cam1["mean_inference_ms"] == pytest.approx((20 + 30 + 25) / 3)
    # Confidences 0.05, 0.55, 0.55, 0.92 -> bins 0, 5, 5, 9.
    assert cam1["confidence_histogram"] == [1, 0, 0, 0, 0, 2, 0, 0, 0, 1]
    # All frames were received just now, inside the 60 s window.
    assert cam1["frames_per_s"] == pytest.approx(3 / 60)
    assert cameras["cam-2"]["confidence_histogram"][9] == 1  # confidence 1.0 in the last bin
    assert body["queue_pending"] == 1
    assert body["labels_since_training"] == 0


def test_prometheus_exposition(client: TestClient) -> None:
    _fill(client)
    client.get("/api/labeling-queue/next", headers=LABELER)
    response = client.get("/metrics", headers=LABELER)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "edgeloop_ingest_batches_total 2.0" in text
    assert 'route="/api/labeling-queue/next"' in text
    assert 'edgeloop_ingest_stage_duration_seconds_count{stage="parse"} 2.0' in text


def _requests(client: TestClient, method: str, route: str, status: str) -> float:
    """Requests recorded so far by ``client``'s app with these labels, from ``/metrics``."""
    text = client.get("/metrics", headers=LABELER).text
    for family in text_string_to_metric_families(text):
        if family.name == "edgeloop_http_request_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count") and sample.labels == {
                    "method": method,
                    "route": route,
                    "status": status,
                }:
                    return sample.value
    return 0.0


def test_request_latency_is_labeled_by_route_template(api_settings: ApiSettings) -> None:
    settings = api_settings.model_copy(update={"max_body_bytes": 1024})
    client = TestClient(create_app(settings))  # no lifespan: these requests need no store
    assert client.get("/reports/drift/cam-1.html", headers=LABELER).status_code == 404
    assert client.get("/reports/drift/cam-2.html", headers=LABELER).status_code == 404
    assert client.get("/no/such/page").status_code == 404
    assert client.post("/api/ingest", content=b"x" * 2048, headers=AGENT).status_code == 413
    assert _requests(client, "GET", "/reports/{path:path}", "404") == 2
    assert _requests(client, "GET", "none", "404") == 1  # unmatched: no raw path as label
    assert _requests(client, "POST", "/api/ingest", "413") == 1  # the size limit is timed too
    assert "/reports/drift/cam-1.html" not in client.get("/metrics", headers=LABELER).text


def test_each_app_has_its_own_registry(client: TestClient, api_settings: ApiSettings) -> None:
    other = TestClient(create_app(api_settings))
    for _ in range(3):
        other.get("/api/metrics/nope", headers=LABELER)
    assert _requests(other, "GET", "none", "404") == 3
    assert _requests(client, "GET", "none", "404") == 0


def test_inspection_logs_filters_and_pages(client: TestClient) -> None:
    _fill(client)
    everything = client.get("/api/inspection-logs", headers=LABELER).json()
    assert everything["count"] == 5
    newest = everything["data"][0]
    assert newest["frame_key"] == "cam-1:3"  # newest capture first
    assert newest["frame_url"] == "/api/frames/cam-1:3.jpg"
    assert newest["bbox_xyxy"] == [100, 50, 180, 230]
    assert newest["width"] == 640

    uncertain = client.get("/api/inspection-logs?uncertain=true", headers=LABELER).json()
    assert {d["confidence"] for d in uncertain["data"]} == {0.55}
    assert uncertain["count"] == 2

    cam2 = client.get("/api/inspection-logs?camera_id=cam-2", headers=LABELER).json()
    assert [d["detection_id"] for d in cam2["data"]] == ["cam-2:1:0"]

    window = client.get(
        "/api/inspection-logs",
        params={"since": T0.isoformat(), "until": (T0 + timedelta(seconds=2)).isoformat()},
        headers=LABELER,
    ).json()
    assert {d["frame_key"] for d in window["data"]} == {"cam-1:1"}
    naive = client.get(
        "/api/inspection-logs", params={"since": "2026-02-01T08:00:02"}, headers=LABELER
    ).json()
    assert {d["frame_key"] for d in naive["data"]} == {"cam-2:1", "cam-1:3"}

    page = client.get("/api/inspection-logs?limit=2&offset=4", headers=LABELER).json()
    assert page["count"] == 5
    assert len(page["data"]) == 1

    bad = client.get("/api/inspection-logs?limit=0", headers=LABELER)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "limit"]
