"""drift_sensor raises drift alerts once per condition and sends them to a real webhook
receiver; a receiver that is down never fails the tick (real store, ephemeral Dagster)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from loopdata import make_loop
from webhook_receiver import Receiver, running_receiver

from edgeloop.settings import get_settings
from edgeloop.store import alerts as store_alerts
from pipelines.sensors import drift_sensor


@pytest.fixture
def loop(tmp_path: Path, database_url: str | None) -> Any:
    return make_loop(tmp_path, database_url=database_url)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with running_receiver() as receiver:
        monkeypatch.setenv("EDGELOOP_ALERT_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("EDGELOOP_ALERT_WEBHOOK_ATTEMPTS", "2")
        get_settings.cache_clear()
        yield receiver


def _report(instance: dg.DagsterInstance, shares: dict[str, float]) -> None:
    """A drift_report materialization with each camera's drift share, as the asset writes it."""
    metadata = {f"{camera}/drift_share": share for camera, share in shares.items()}
    instance.report_runless_asset_event(dg.AssetMaterialization("drift_report", metadata=metadata))


def _tick(loop: Any, instance: dg.DagsterInstance, cursor: str | None = None) -> Any:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"store": loop.store_resource}
    ) as context:
        return drift_sensor(context)


def _alerts(loop: Any) -> list[dict[str, Any]]:
    with loop.store.connect() as con:
        return store_alerts.list_alerts(con=con)


def test_each_drift_report_of_a_drifted_camera_raises_one_alert(
    loop: Any,
    instance: dg.DagsterInstance,
    webhook: Receiver,
) -> None:
    _report(instance, {"yard": 0.67, "gate": 0.0})
    first = _tick(loop, instance)
    _report(instance, {"yard": 0.5, "gate": 0.1})
    second = _tick(loop, instance, cursor=first.cursor)
    assert isinstance(second, dg.SensorResult)
    [alert] = _alerts(loop)
    assert (alert["camera_id"], alert["kind"], alert["status"]) == ("yard", "drift", "open")
    assert (alert["delivery_status"], alert["delivery_attempts"]) == ("sent", 1)
    assert len(webhook.bodies) == 1
    assert webhook.bodies[0]["alerts"][0]["labels"]["camera_id"] == "yard"


def test_a_receiver_that_is_down_does_not_fail_the_tick(
    loop: Any,
    instance: dg.DagsterInstance,
    webhook: Receiver,
) -> None:
    webhook.stop()
    _report(instance, {"yard": 0.67})
    first = _tick(loop, instance)
    _report(instance, {"yard": 0.67})
    second = _tick(loop, instance, cursor=first.cursor)
    assert isinstance(first, dg.SensorResult) and isinstance(second, dg.SensorResult)
    [alert] = _alerts(loop)
    assert (alert["delivery_status"], alert["delivery_attempts"]) == ("failed", 2)
    assert alert["delivery_error"]
