"""``/api/alerts`` against alerts stored on both backends: list and filter (any role),
acknowledge (labeler or admin; who and when recorded), and 4xx for bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from api_support import ADMIN, AGENT, LABELER, raise_drift_alert
from fastapi.testclient import TestClient

from edgeloop.store import AnyStore, alerts

pytestmark = pytest.mark.backends

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_list_filter_and_acknowledge(client: TestClient, store: AnyStore) -> None:
    yard = raise_drift_alert(store, "yard", 0.67, at=T0)
    gate = raise_drift_alert(store, "gate", 0.5, at=T0 + timedelta(minutes=5))

    answer = client.get("/api/alerts", headers=AGENT)  # any role reads
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["open_count"] == 2
    assert [a["alert_id"] for a in body["alerts"]] == [gate, yard]  # newest first
    assert body["alerts"][1]["value"] == 0.67 and body["alerts"][1]["status"] == "open"

    refused = client.post(f"/api/alerts/{yard}/acknowledge", headers=AGENT)
    assert refused.status_code == 403
    acked = client.post(f"/api/alerts/{yard}/acknowledge", headers=LABELER)
    assert acked.status_code == 200, acked.text
    assert acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "labeler"
    assert acked.json()["acknowledged_at"] is not None
    again = client.post(f"/api/alerts/{yard}/acknowledge", headers=ADMIN)
    assert again.status_code == 409 and "acknowledged" in again.json()["detail"]

    open_only = client.get("/api/alerts", params={"status": "open"}, headers=LABELER).json()
    assert [a["alert_id"] for a in open_only["alerts"]] == [gate] and open_only["open_count"] == 1
    seen = client.get("/api/alerts", params={"status": "acknowledged"}, headers=LABELER).json()
    assert [a["alert_id"] for a in seen["alerts"]] == [yard]
    with store.connect() as con:
        stored = alerts.get(con=con, alert_id=yard)
    assert stored is not None and stored["acknowledged_by"] == "labeler"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("post", "/api/alerts/999/acknowledge", 404),
        ("post", "/api/alerts/0/acknowledge", 422),
        ("post", "/api/alerts/abc/acknowledge", 422),
        ("post", f"/api/alerts/{2**70}/acknowledge", 422),
        ("get", "/api/alerts?status=closed", 422),
        ("get", "/api/alerts?limit=0", 422),
    ],
)
def test_bad_input_gets_4xx(client: TestClient, method: str, path: str, expected: int) -> None:
    response = getattr(client, method)(path, headers=ADMIN)
    assert response.status_code == expected, response.text


def test_no_token_gets_401(client: TestClient) -> None:
    assert client.get("/api/alerts").status_code == 401
