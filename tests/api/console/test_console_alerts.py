"""The console's alerts panel, the drift panel's model versions and promotions, and the
change feed behind its live updates, against rows stored on both backends."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from api_support import ADMIN, AGENT, LABELER, raise_drift_alert
from console_support import add_drift, add_move
from fastapi.testclient import TestClient

from api.console.live import ChangeFeed, event
from edgeloop.store import AnyStore, alerts
from edgeloop.store.changes import markers

pytestmark = pytest.mark.backends


def test_alerts_panel_lists_open_alerts_with_a_button_for_labelers(
    client: TestClient, store: AnyStore
) -> None:
    yard = raise_drift_alert(store, "yard", 0.67)
    gate = raise_drift_alert(store, "gate", 0.67)
    with store.connect() as con:
        alerts.acknowledge(con=con, alert_id=gate, actor="alice")

    data = client.get("/console/api/alerts", headers=AGENT).json()
    assert data["open_count"] == 1
    assert [(a["alert_id"], a["status"]) for a in data["alerts"]] == [
        (yard, "open"),
        (gate, "acknowledged"),
    ]
    html = client.get("/console/alerts/fragment", headers=LABELER).text
    assert f'data-url="/api/alerts/{yard}/acknowledge"' in html
    assert "camera yard drifted: drift share 0.67" in html
    assert "alice" in html  # who acknowledged gate's
    assert (
        'data-action="acknowledge"'
        not in client.get("/console/alerts/fragment", headers=AGENT).text
    )
    page = client.get("/console/alerts")
    assert page.status_code == 200 and 'id="alerts-banner"' in page.text
    assert "[!window.edgeloopLive]" in page.text  # polling pauses while the stream is live


def test_drift_panel_shows_model_versions_and_promotions(
    client: TestClient, store: AnyStore
) -> None:
    now = datetime.now(UTC)
    add_move(
        store,
        version="4",
        previous_version="3",
        reason="better",
        created_at=now - timedelta(hours=2),
    )
    add_drift(
        store,
        "yard",
        at=now - timedelta(hours=1),
        p_values={"brightness": 0.001},
        model_version="4",
        reference_model_version="3",
        model_versions=json.dumps({"4": {"frames": 100, "drift_share": None}}),
    )
    data = client.get("/console/api/drift", headers=ADMIN).json()
    assert [(m["version"], m["action"]) for m in data["promotions"]] == [("4", "promote")]
    point = data["cameras"][0]["points"][0]
    assert (point["model_version"], point["reference_model_version"]) == ("4", "3")
    html = client.get("/console/drift/fragment", headers=ADMIN).text
    assert "changed from v3 since the reference window" in html
    assert 'id="drift-promotions"' in html


def test_retraining_panel_shows_the_cooldown_state(client: TestClient) -> None:
    html = client.get("/console/retraining/fragment", headers=ADMIN).text
    assert 'data-field="last_retrain_at">last retrain never' in html
    assert "a drift retrain may launch now" in html


def test_the_change_feed_names_the_panels_of_what_changed(store: AnyStore) -> None:
    def read() -> dict[str, str]:
        with store.connect() as con:
            return markers(con=con)

    async def scenario() -> set[str]:
        feed = ChangeFeed(read, poll_s=0.05)
        queue = feed.listen()

        async def baseline_read() -> None:  # the first poll: the baseline, no event
            while feed.version is None:
                await asyncio.sleep(0.02)

        # Waited for, not slept for: on a loaded machine the first read took over 0.2 s,
        # the alert went into the baseline, and no change ever came (CI run of 0ed337b).
        await asyncio.wait_for(baseline_read(), timeout=30)
        assert queue.empty()
        await asyncio.to_thread(raise_drift_alert, store, "yard", 0.67)
        subjects = await asyncio.wait_for(queue.get(), timeout=30)
        feed.close(queue)
        return subjects

    subjects = asyncio.run(scenario())
    assert "alerts" in subjects
    assert '"panels": ["alerts"]' in event(subjects)
