"""One retrain threshold: EDGELOOP_RETRAIN_LABEL_COUNT reaches the sensor, the API and the
CLI; so do the drift retrain's minimum of new labels and cooldown
(EDGELOOP_DRIFT_RETRAIN_MIN_LABELS, EDGELOOP_DRIFT_RETRAIN_COOLDOWN_H).

Each of the three runs as it does for a user: the sensor evaluated against a real DuckDB
file, the API as a real uvicorn process, ``edgeloop status --json`` as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
from loopdata import T0, make_loop

from edgeloop.cli.services import free_port, start_api
from edgeloop.settings import LoopSettings, get_settings
from pipelines.sensors import drift_sensor, label_count_sensor

THRESHOLD = 20  # not the seed's 50
DRIFT_MIN_LABELS = 3  # not the default 20
DRIFT_COOLDOWN_H = 0.5  # not the default 6
TOKENS = {"admin-token": "admin"}


@pytest.mark.integration
def test_retrain_label_count_is_one_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EDGELOOP_RETRAIN_LABEL_COUNT", str(THRESHOLD))
    monkeypatch.setenv("EDGELOOP_DRIFT_RETRAIN_MIN_LABELS", str(DRIFT_MIN_LABELS))
    monkeypatch.setenv("EDGELOOP_DRIFT_RETRAIN_COOLDOWN_H", str(DRIFT_COOLDOWN_H))
    get_settings.cache_clear()
    loop = make_loop(tmp_path)
    keys = loop.add_frames("cam-a", count=THRESHOLD)
    for i, key in enumerate(keys[:-1]):
        loop.label(key, [], at=T0 + timedelta(seconds=i))

    # The sensor: 19 labels skip with "19/20", the 20th launches.
    with dg.DagsterInstance.ephemeral() as instance:

        def tick(sensor: object = label_count_sensor) -> dg.SensorResult | dg.SkipReason:
            with dg.build_sensor_context(
                instance=instance, resources={"store": loop.store_resource}
            ) as context:
                return sensor(context)  # type: ignore[operator]

        # Drift with 19 new labels: a retrain at EDGELOOP_DRIFT_RETRAIN_MIN_LABELS=3 (the
        # default 20 would boost the queue instead).
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "drift_report",
                metadata={"cam-a/drift_share": 0.5, "cam-a/min_p_value": 0.001},
            )
        )
        drifted = tick(drift_sensor)
        assert isinstance(drifted, dg.SensorResult) and len(drifted.run_requests or []) == 1

        skipped = tick()
        assert isinstance(skipped, dg.SkipReason)
        assert f"{THRESHOLD - 1}/{THRESHOLD}" in (skipped.skip_message or "")
        loop.label(keys[-1], [], at=T0 + timedelta(minutes=5))
        launched = tick()
        assert isinstance(launched, dg.SensorResult) and len(launched.run_requests or []) == 1

    # The API (and the labeling page, which reads this route) on the same data folder.
    settings = LoopSettings(data_dir=loop.data_dir)
    env = {
        "EDGELOOP_API_TOKENS": json.dumps(TOKENS),
        "EDGELOOP_API_WARM_REGISTRY": "false",
        "EDGELOOP_API_DAGSTER_URL": f"http://127.0.0.1:{free_port()}",
        "EDGELOOP_RETRAIN_LABEL_COUNT": str(THRESHOLD),
    }
    with start_api(settings, extra_env=env) as api:
        conditions = httpx.get(
            f"{api.url}/api/retraining/conditions",
            headers={"Authorization": "Bearer admin-token"},
            timeout=30,
        ).json()
    assert conditions["label_threshold"] == THRESHOLD
    assert conditions["drift_min_labels"] == DRIFT_MIN_LABELS
    assert conditions["drift_cooldown_h"] == DRIFT_COOLDOWN_H
    assert conditions["drift_cooldown_until"] is not None  # the drift retrain just launched
    assert conditions["labels_since_training"] == THRESHOLD
    assert conditions["retrain_due"] is True
    assert (
        conditions["reasons"][0]
        == f"{THRESHOLD} reviewed labels since the last training run (threshold {THRESHOLD})"
    )

    # The CLI.
    proc = subprocess.run(
        [sys.executable, "-m", "edgeloop.cli", "status", "--json"],
        env={**os.environ, "EDGELOOP_DATA_DIR": str(loop.data_dir)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads(proc.stdout)
    assert status["retrain_label_count"] == THRESHOLD
    assert status["labels_since_last_training"] == THRESHOLD
    assert status["retrain"]["due"] is True and status["retrain"]["trigger"] == "label_count"
    assert status["retrain"]["drift_min_labels"] == DRIFT_MIN_LABELS
    assert status["retrain"]["drift_cooldown_h"] == DRIFT_COOLDOWN_H
    assert datetime.fromisoformat(status["retrain"]["last_retrain_at"]) == datetime.fromisoformat(
        conditions["last_retrain_at"]
    )
