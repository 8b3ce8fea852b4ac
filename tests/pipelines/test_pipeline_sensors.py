"""The retraining sensors on a real DuckDB file and an ephemeral Dagster instance."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest
from loopdata import T0, make_loop

from edgeloop.rules import (
    DRIFT_RETRAIN_COOLDOWN_H,
    DRIFT_RETRAIN_MIN_LABELS,
    RETRAIN_LABEL_COUNT,
    uncertainty_score,
)
from edgeloop.store.connection import parse_json
from pipelines.sensors import drift_sensor, label_count_sensor


@pytest.fixture
def loop(tmp_path, database_url):
    return make_loop(tmp_path, database_url=database_url)


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def _tick(sensor, loop, instance, cursor=None):
    """Evaluate ``sensor`` once, as the daemon would, with the store resource on ``loop``."""
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"store": loop.store_resource}
    ) as context:
        return sensor(context)


def _events(loop) -> list[tuple]:
    with loop.store.connect() as con:
        return con.execute(
            "SELECT trigger, camera_id, decision, labels_since_training, run_key, details "
            "FROM retraining_events ORDER BY event_id"
        ).fetchall()


def _label(loop, keys, start):
    for i, key in enumerate(keys):
        loop.label(key, [], at=start + timedelta(seconds=i))


def _newest_label_id(loop) -> int:
    with loop.store.connect() as con:
        return int(con.execute("SELECT max(label_id) FROM reviewed_labels").fetchone()[0])


# --- label_count_sensor ---------------------------------------------------------------


def test_label_count_fires_at_50_not_at_49(loop, instance):
    keys = loop.add_frames("cam-a", count=RETRAIN_LABEL_COUNT)
    _label(loop, keys[:-1], T0)

    skipped = _tick(label_count_sensor, loop, instance)
    assert isinstance(skipped, dg.SkipReason)
    assert "49/50" in skipped.skip_message
    assert _events(loop) == []

    _label(loop, keys[-1:], T0 + timedelta(minutes=5))
    result = _tick(label_count_sensor, loop, instance)
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests
    assert request.run_key == f"labels:{_newest_label_id(loop)}"
    assert request.tags["edgeloop/trigger"] == "label_count"
    assert result.cursor == request.run_key
    [(trigger, camera, decision, count, run_key, _)] = _events(loop)
    assert (trigger, camera, decision, count, run_key) == (
        "label_count",
        None,
        "launched",
        50,
        request.run_key,
    )


def test_same_labels_give_the_same_run_key_and_one_event(loop, instance):
    keys = loop.add_frames("cam-a", count=RETRAIN_LABEL_COUNT)
    _label(loop, keys, T0)
    first = _tick(label_count_sensor, loop, instance)
    assert isinstance(first, dg.SensorResult)

    # A fresh tick (cursor lost, e.g. the daemon after a headless demo) does not re-request.
    again = _tick(label_count_sensor, loop, instance)
    assert isinstance(again, dg.SkipReason) and "already requested" in again.skip_message
    assert len(_events(loop)) == 1

    # The key is a function of the labels: forgetting the event gives the same key back.
    with loop.store.connect() as con:
        con.execute("DELETE FROM retraining_events")
    replay = _tick(label_count_sensor, loop, instance)
    assert replay.run_requests[0].run_key == first.run_requests[0].run_key

    # One more label is a new trigger.
    extra = loop.add_frames("cam-a", count=1, start=T0 + timedelta(hours=1))
    _label(loop, extra, T0 + timedelta(hours=1))
    newer = _tick(label_count_sensor, loop, instance, cursor=replay.cursor)
    assert newer.run_requests[0].run_key == f"labels:{_newest_label_id(loop)}"
    assert newer.run_requests[0].run_key != first.run_requests[0].run_key


def test_a_training_run_resets_the_count(loop, instance):
    keys = loop.add_frames("cam-a", count=RETRAIN_LABEL_COUNT + 3)
    _label(loop, keys, T0)
    cutoff = T0 + timedelta(seconds=RETRAIN_LABEL_COUNT - 1)  # 3 labels are newer
    with loop.store.connect() as con:
        con.execute(
            "INSERT INTO training_runs VALUES ('run-1', ?, ?, 50, 'v1', '2', 'dagster-run')",
            [cutoff, cutoff],
        )
    skipped = _tick(label_count_sensor, loop, instance)
    assert isinstance(skipped, dg.SkipReason) and "3/50" in skipped.skip_message


# --- drift_sensor -----------------------------------------------------------------------


def _report_drift(instance, cameras: dict[str, tuple[float, float | None]]) -> int:
    """Record a drift_report materialization as the asset writes it; returns its storage id."""
    metadata: dict[str, object] = {"cameras_evaluated": len(cameras)}
    for camera, (share, p) in cameras.items():
        metadata[f"{camera}/drift_share"] = share
        if p is not None:
            metadata[f"{camera}/min_p_value"] = p
        metadata[f"{camera}/drifted"] = share > 0.3 or (p is not None and p < 0.05)
    instance.report_runless_asset_event(dg.AssetMaterialization("drift_report", metadata=metadata))
    return (
        instance.fetch_materializations(dg.AssetKey("drift_report"), limit=1).records[0].storage_id
    )


def _priorities(loop, camera: str) -> dict[str, float]:
    with loop.store.connect() as con:
        return dict(
            con.execute(
                "SELECT frame_key, priority FROM labeling_queue WHERE camera_id = ?", [camera]
            ).fetchall()
        )


def test_drift_with_new_labels_launches_one_retrain(loop, instance):
    a = loop.add_frames("cam-a", count=DRIFT_RETRAIN_MIN_LABELS)
    loop.add_frames("cam-b", count=6, start=T0 + timedelta(minutes=5))
    _label(loop, a, T0 + timedelta(hours=1))
    storage_id = _report_drift(instance, {"cam-a": (0.5, 0.2), "cam-b": (0.0, 0.6)})

    result = _tick(drift_sensor, loop, instance)

    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests
    assert request.run_key == f"drift:cam-a:{storage_id}"
    assert request.tags["edgeloop/trigger"] == "drift"
    assert result.cursor == str(storage_id)
    [(trigger, camera, decision, labels, run_key, details)] = _events(loop)
    assert (trigger, camera, decision, labels, run_key) == (
        "drift",
        "cam-a",
        "launched",
        DRIFT_RETRAIN_MIN_LABELS,
        request.run_key,
    )
    assert parse_json(details)["materialization_storage_id"] == storage_id

    # The next tick has nothing new; a lost cursor does not launch or record twice.
    nothing = _tick(drift_sensor, loop, instance, cursor=result.cursor)
    assert isinstance(nothing, dg.SkipReason)
    replay = _tick(drift_sensor, loop, instance)
    assert replay.run_requests == [] and len(_events(loop)) == 1


def test_drift_without_new_labels_defers_and_boosts_the_queue(loop, instance):
    a = loop.add_frames("cam-a", count=4)
    b = loop.add_frames("cam-b", count=4, start=T0 + timedelta(minutes=5))
    loop.queue(a + b)
    before_a = _priorities(loop, "cam-a")

    # p < 0.05 drifts the camera even with a small drift share (the seed's rule).
    storage_id = _report_drift(instance, {"cam-a": (0.0, 0.5), "cam-b": (0.1, 0.01)})
    result = _tick(drift_sensor, loop, instance)

    assert result.run_requests == []
    [(trigger, camera, decision, labels, run_key, details)] = _events(loop)
    assert (trigger, camera, decision, labels) == ("drift", "cam-b", "deferred", 0)
    assert run_key == f"drift:cam-b:{storage_id}"
    assert parse_json(details)["queue_items_boosted"] == 4
    for key, priority in _priorities(loop, "cam-b").items():
        expected = max(
            uncertainty_score(d["confidence"]) for d in loop.detections if d["frame_key"] == key
        )
        assert priority == pytest.approx(2.0 * expected)
    assert _priorities(loop, "cam-a") == before_a


def test_five_labels_on_a_drifted_camera_boost_its_queue_instead_of_retraining(loop, instance):
    """Issue 20: five labels on a drifted camera launched a full retrain. Below
    EDGELOOP_DRIFT_RETRAIN_MIN_LABELS the camera's queue is boosted, so its frames come next."""
    a = loop.add_frames("cam-a", count=10)
    loop.queue(a[5:])
    _label(loop, a[:5], T0 + timedelta(hours=1))
    storage_id = _report_drift(instance, {"cam-a": (0.5, 0.001)})

    result = _tick(drift_sensor, loop, instance)

    assert result.run_requests == []
    [(trigger, camera, decision, labels, run_key, details)] = _events(loop)
    assert (trigger, camera, decision, labels, run_key) == (
        "drift",
        "cam-a",
        "deferred",
        5,
        f"drift:cam-a:{storage_id}",
    )
    assert parse_json(details)["queue_items_boosted"] == 5
    assert parse_json(details)["drift_min_labels"] == DRIFT_RETRAIN_MIN_LABELS
    with loop.store.connect() as con:
        [(reason,)] = con.execute("SELECT reason FROM retraining_events").fetchall()
    assert "only 5 new reviewed label(s) since the last training, below the " in reason
    assert f"the {DRIFT_RETRAIN_MIN_LABELS} a drift retrain needs" in reason


def test_a_camera_that_stays_drifted_retrains_once_per_cooldown(loop, instance):
    """Every drift report of a camera that stays drifted (one per drift_job run) does not
    relaunch a retrain: none within EDGELOOP_DRIFT_RETRAIN_COOLDOWN_H of the last one."""
    keys = loop.add_frames("cam-a", count=DRIFT_RETRAIN_MIN_LABELS + 10)
    _label(loop, keys[:DRIFT_RETRAIN_MIN_LABELS], T0 + timedelta(hours=1))
    _report_drift(instance, {"cam-a": (0.5, 0.001)})
    first = _tick(drift_sensor, loop, instance)
    [launched] = first.run_requests

    # The next drift report, 15 minutes later: still drifted, and more labels came in
    # (the retrain has not finished, so they all count as new).
    _label(loop, keys[DRIFT_RETRAIN_MIN_LABELS:], T0 + timedelta(hours=2))
    second_id = _report_drift(instance, {"cam-a": (0.5, 0.001)})
    second = _tick(drift_sensor, loop, instance, cursor=first.cursor)
    assert second.run_requests == []
    events = _events(loop)
    assert [e[2] for e in events] == ["launched", "deferred"]
    assert events[1][4] == f"drift:cam-a:{second_id}"
    cooldown_until = parse_json(events[1][5])["cooldown_until"]
    with loop.store.connect() as con:
        [(launched_at,)] = con.execute(
            "SELECT created_at FROM retraining_events WHERE decision = 'launched'"
        ).fetchall()
        reason = con.execute("SELECT reason FROM retraining_events ORDER BY event_id").fetchall()[
            1
        ][0]
    assert cooldown_until == (launched_at + timedelta(hours=DRIFT_RETRAIN_COOLDOWN_H)).isoformat()
    assert f"less than {DRIFT_RETRAIN_COOLDOWN_H:g} h ago" in reason

    # Once the cooldown is over, a camera still drifted with new labels retrains again.
    with loop.store.connect() as con:
        con.execute(
            "UPDATE retraining_events SET created_at = created_at - ? WHERE decision = 'launched'",
            [timedelta(hours=DRIFT_RETRAIN_COOLDOWN_H + 1)],
        )
    third_id = _report_drift(instance, {"cam-a": (0.5, 0.001)})
    third = _tick(drift_sensor, loop, instance, cursor=second.cursor)
    [again] = third.run_requests
    assert again.run_key == f"drift:cam-a:{third_id}" != launched.run_key


def test_drift_reports_without_drift_launch_nothing(loop, instance):
    loop.add_frames("cam-a", count=3)
    _report_drift(instance, {"cam-a": (0.25, 0.2)})
    result = _tick(drift_sensor, loop, instance)
    assert result.run_requests == [] and _events(loop) == []
    assert isinstance(_tick(drift_sensor, loop, instance), dg.SensorResult)  # no cursor: re-read
    assert isinstance(_tick(drift_sensor, loop, instance, cursor=result.cursor), dg.SkipReason)


def test_a_failed_retrain_run_is_recorded_on_the_event_that_launched_it(loop, instance):
    """retrain_failure_sensor, on a real failed run in the instance and a real DuckDB file."""
    from edgeloop.store import retraining
    from pipelines.sensors import retrain_failure_sensor

    @dg.op
    def broken() -> None:
        raise RuntimeError("ultralytics ran out of memory")

    result = (
        dg.GraphDefinition(name="retrain_job", node_defs=[broken])
        .to_job()
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    assert not result.success
    with loop.store.connect() as con:
        retraining.record(
            con=con,
            trigger="manual",
            decision="launched",
            reason="by test",
            labels_since_training=0,
            dagster_run_id=result.run_id,
        )
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    with dg.build_run_status_sensor_context(
        sensor_name="retrain_failure_sensor",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        dagster_event=failure,
        resources={"store": loop.store_resource},
    ) as context:
        retrain_failure_sensor(context.for_run_failure())
    with loop.store.connect() as con:
        [event] = retraining.recent(con=con)
    assert event["run_status"] == "failed"
    assert "broken" in event["outcome"]  # Dagster names the failed step
