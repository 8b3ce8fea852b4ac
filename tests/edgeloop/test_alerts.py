"""Drift alerts on both store backends: raised once, cleared, acknowledged, raised again
only after that; delivered to a real HTTP receiver on loopback (Alertmanager's format and
the plain JSON one), and a receiver that is down: retried, marked failed, not raised twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from webhook_receiver import Receiver, running_receiver

from edgeloop import alerts
from edgeloop.settings import LoopSettings
from edgeloop.store import AnyStore
from edgeloop.store import alerts as store_alerts
from edgeloop.store.connection import Connection


def _get(con: Connection, alert_id: int) -> dict[str, Any]:
    row = store_alerts.get(con=con, alert_id=alert_id)
    assert row is not None
    return row


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def _drift(share: float, version: str | None = "3") -> dict[str, Any]:
    return {"drift_share": share, "min_p_value": 0.001, "p_values": {}, "model_version": version}


def _loop(tmp_path: Any, **fields: Any) -> LoopSettings:
    return LoopSettings(data_dir=tmp_path / "data", **fields)


def test_an_alert_is_raised_once_and_again_only_after_ack_and_clear(
    store: AnyStore, tmp_path: Any
) -> None:
    loop = _loop(tmp_path)
    with store.connect() as con:
        first = alerts.evaluate(con=con, loop=loop, cameras={"yard": _drift(0.67)}, now=T0)
        assert len(first) == 1
        # Every later report that still drifts: no second alert.
        for minutes in (15, 30):
            again = alerts.evaluate(
                con=con,
                loop=loop,
                cameras={"yard": _drift(0.5)},
                now=T0 + timedelta(minutes=minutes),
            )
            assert again == []
        # Clears, then fires again while still open (not acknowledged): still one alert.
        alerts.evaluate(
            con=con, loop=loop, cameras={"yard": _drift(0.1)}, now=T0 + timedelta(hours=1)
        )
        assert alerts.evaluate(con=con, loop=loop, cameras={"yard": _drift(0.5)}) == []
        rows = store_alerts.list_alerts(con=con)
        assert [(r["status"], r["cleared_at"]) for r in rows] == [("open", None)]
        assert rows[0]["severity"] == "critical" and rows[0]["delivery_status"] == "disabled"
        assert rows[0]["model_version"] == "3" and "0.67" in rows[0]["summary"]

        acked = store_alerts.acknowledge(con=con, alert_id=first[0], actor="alice", now=T0)
        assert (acked["status"], acked["acknowledged_by"]) == ("acknowledged", "alice")
        with pytest.raises(store_alerts.AlertStateError):
            store_alerts.acknowledge(con=con, alert_id=first[0], actor="bob")
        with pytest.raises(store_alerts.AlertNotFoundError):
            store_alerts.acknowledge(con=con, alert_id=999, actor="bob")
        # Acknowledged while the condition holds: still no new alert.
        assert alerts.evaluate(con=con, loop=loop, cameras={"yard": _drift(0.5)}) == []
        # The condition clears (resolved), then fires again: a new alert.
        alerts.evaluate(con=con, loop=loop, cameras={"yard": _drift(0.0)})
        assert _get(con, first[0])["status"] == "resolved"
        second = alerts.evaluate(con=con, loop=loop, cameras={"yard": _drift(0.34)})
        assert len(second) == 1 and second != first
        assert store_alerts.open_count(con=con) == 1
        assert [r["alert_id"] for r in store_alerts.list_alerts(con=con, status="open")] == second


def test_class_mix_alert_after_a_promotion(store: AnyStore, tmp_path: Any) -> None:
    loop = _loop(tmp_path, alert_class_mix_shift=0.2)
    assert alerts.class_mix_shift(
        {"person": 90, "car": 10}, {"person": 50, "car": 50}
    ) == pytest.approx(0.4)
    assert alerts.class_mix_shift({}, {"person": 1}) is None
    shifted = {**_drift(0.0), "class_mix_shift": 0.4, "promoted_version": "4"}
    with store.connect() as con:
        raised = alerts.evaluate(con=con, loop=loop, cameras={"gate": shifted})
        alert = _get(con, raised[0])
        assert (alert["kind"], alert["model_version"], alert["threshold"]) == (
            "class_mix",
            "4",
            0.2,
        )
        small = {**shifted, "class_mix_shift": 0.1}
        alerts.evaluate(con=con, loop=loop, cameras={"gate": small})
        assert _get(con, raised[0])["cleared_at"] is not None


def test_alertmanager_payload_reaches_a_real_receiver(
    store: AnyStore, tmp_path: Any, receiver: Receiver
) -> None:
    loop = _loop(tmp_path, alert_webhook_url=receiver.url, api_url="http://loop:8000")
    with store.connect() as con:
        raised = alerts.evaluate(
            con=con, loop=loop, cameras={"yard": _drift(0.67), "gate": _drift(0.5)}, now=T0
        )
    outcome = alerts.deliver_pending(store=store, loop=loop, wait_s=0.01)
    assert outcome == alerts.Delivery(True, 1)
    [body] = receiver.bodies
    assert body["version"] == "4" and body["status"] == "firing"
    assert body["groupLabels"] == {"alertname": "EdgeloopCameraDrift"}
    assert body["externalURL"] == "http://loop:8000/console/alerts"
    cameras = {a["labels"]["camera_id"]: a for a in body["alerts"]}
    assert set(cameras) == {"yard", "gate"}
    yard = cameras["yard"]
    assert yard["labels"]["severity"] == "critical" and yard["status"] == "firing"
    assert yard["startsAt"] == "2026-03-01T12:00:00Z" and yard["endsAt"] == "0001-01-01T00:00:00Z"
    assert "drift share 0.67" in yard["annotations"]["summary"]
    assert yard["generatorURL"].startswith("http://loop:8000/console/alerts?alert_id=")
    with store.connect() as con:
        rows = [_get(con, i) for i in raised]
    assert {(r["delivery_status"], r["delivery_attempts"]) for r in rows} == {("sent", 1)}
    # Sent once: nothing pending on the next tick.
    assert alerts.deliver_pending(store=store, loop=loop) is None
    assert len(receiver.bodies) == 1


def test_json_format_and_a_receiver_that_answers_500(
    store: AnyStore, tmp_path: Any, receiver: Receiver
) -> None:
    loop = _loop(tmp_path, alert_webhook_url=receiver.url, alert_webhook_format="json")
    receiver.status = 500
    with store.connect() as con:
        [alert_id] = alerts.evaluate(con=con, loop=loop, cameras={"yard": _drift(0.67)})
    outcome = alerts.deliver_pending(store=store, loop=loop, wait_s=0.01)
    assert outcome is not None and not outcome.delivered and outcome.attempts == 3
    assert len(receiver.bodies) == 3  # retried
    assert receiver.bodies[0]["alerts"][0]["alert_id"] == alert_id
    assert receiver.bodies[0]["alerts"][0]["camera_id"] == "yard"
    with store.connect() as con:
        row = _get(con, alert_id)
    assert row["delivery_status"] == "failed" and "500" in row["delivery_error"]


def test_a_receiver_that_is_down_marks_the_alert_failed_and_raises_nothing_twice(
    store: AnyStore, tmp_path: Any, receiver: Receiver
) -> None:
    url = receiver.url
    receiver.stop()  # nothing listens on the port any more
    loop = _loop(tmp_path, alert_webhook_url=url, alert_webhook_attempts=2)
    for _tick in range(3):
        with store.connect() as con:
            alerts.evaluate(con=con, loop=loop, cameras={"yard": _drift(0.67)})
        alerts.deliver_pending(store=store, loop=loop, wait_s=0.01)
    with store.connect() as con:
        [row] = store_alerts.list_alerts(con=con)
    assert (row["delivery_status"], row["delivery_attempts"]) == ("failed", 2)
    assert "ConnectError" in row["delivery_error"]
