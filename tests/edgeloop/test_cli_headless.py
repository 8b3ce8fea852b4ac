"""Headless launching: tick a sensor and run its requests on a persistent Dagster instance."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from loopdata import T0, make_loop

from edgeloop.cli.headless import RunFailedError, cursor_path, materialize, tick_sensor
from pipelines.definitions import defs


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def _toy_defs(fail: bool = False) -> dg.Definitions:
    """A sensor asking for keys k1, k2, k2, ... (cursor = ticks so far) and a one-asset job."""

    @dg.asset
    def toy() -> None:
        if fail:
            raise RuntimeError("toy failure")

    toy_job = dg.define_asset_job("toy_job", selection=[toy])

    @dg.sensor(job=toy_job)
    def toy_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        ticks = int(context.cursor or 0) + 1
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"k{min(ticks, 2)}", tags={"why": "test"})],
            cursor=str(ticks),
        )

    return dg.Definitions(assets=[toy], jobs=[toy_job], sensors=[toy_sensor])


def test_tick_sensor_runs_requests_once_per_run_key_and_keeps_the_cursor(instance):
    toy = _toy_defs()
    [first] = tick_sensor(toy, "toy_sensor", instance)
    [second] = tick_sensor(toy, "toy_sensor", instance)
    assert tick_sensor(toy, "toy_sensor", instance) == []  # k2 again: its run exists

    assert json.loads(cursor_path(instance).read_text()) == {"toy_sensor": "3"}
    for run_id, key in ((first, "k1"), (second, "k2")):
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.job_name == "toy_job"
        assert run.tags["dagster/run_key"] == key
        assert run.tags["dagster/sensor_name"] == "toy_sensor"
        assert run.tags["why"] == "test"


def test_tick_sensor_reports_a_failed_run(instance):
    with pytest.raises(RunFailedError, match=r"toy_job run .* failed"):
        tick_sensor(_toy_defs(fail=True), "toy_sensor", instance)
    [run_id] = tick_sensor(_toy_defs(fail=True), "toy_sensor", instance, raise_on_error=False)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE


def test_drift_sensor_headless_defers_without_labels(tmp_path, instance):
    # make_loop writes to tmp_path/data: the EDGELOOP_DATA_DIR the code location reads here.
    loop = make_loop(tmp_path)
    keys = loop.add_frames("cam-a", count=4, start=T0)
    loop.queue(keys)
    run_id = materialize(defs, ["detections"], instance)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    assert instance.get_latest_materialization_event(dg.AssetKey("detections")) is not None

    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "drift_report",
            metadata={"cam-a/drift_share": 0.6, "cam-a/min_p_value": 0.001, "cam-a/drifted": True},
        )
    )
    assert tick_sensor(defs, "drift_sensor", instance) == []
    assert tick_sensor(defs, "drift_sensor", instance) == []
    with loop.store.connect() as con:
        events = con.execute(
            "SELECT trigger, camera_id, decision FROM retraining_events"
        ).fetchall()
    assert events == [("drift", "cam-a", "deferred")]
    assert "drift_sensor" in json.loads(cursor_path(instance).read_text())


def test_materialize_fails_loudly(tmp_path, instance):
    make_loop(tmp_path)  # an empty store: detections has nothing to summarise
    with pytest.raises(RunFailedError, match="materializing detections failed"):
        materialize(defs, "detections", instance)
