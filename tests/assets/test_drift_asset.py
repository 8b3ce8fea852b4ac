"""drift_report: the verdict from a report dict, window choice, and a real Evidently run
on a real DuckDB file (one steady camera, one whose frames got darker and blurrier)."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from loopdata import T0, frame_features, make_loop

from assets.drift import (
    FEATURES,
    drift_from_report,
    parse_drift_metadata,
    select_windows,
)
from edgeloop.store import drift


def _fake_report(share: float, p_values: dict[str, float]) -> dict:
    metrics = [
        {
            "config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
            "value": {"count": share * len(p_values), "share": share},
        }
    ]
    metrics += [
        {
            "config": {"type": "evidently:metric_v2:ValueDrift", "column": c, "method": "ks"},
            "value": p,
        }
        for c, p in p_values.items()
    ]
    return {"metrics": metrics, "tests": []}


def test_verdict_follows_the_seed_rule():
    steady = drift_from_report(_fake_report(0.0, {"brightness": 0.4, "contrast": 0.9}))
    assert not steady.drifted
    assert steady.min_p_value == pytest.approx(0.4)

    one_low_p = drift_from_report(_fake_report(1 / 6, {"brightness": 0.01, "contrast": 0.9}))
    assert one_low_p.drifted  # p < 0.05 on any feature
    assert one_low_p.drifted_features == ["brightness"]

    high_share = drift_from_report(_fake_report(0.5, {"brightness": 0.2, "contrast": 0.3}))
    assert high_share.drifted  # share > 0.30

    with pytest.raises(ValueError, match="DriftedColumnsCount"):
        drift_from_report({"metrics": []})


def _frames(n: int, start=T0) -> pd.DataFrame:
    return pd.DataFrame(
        {"captured_at": [start + timedelta(seconds=i) for i in range(n)], "x": range(n)}
    )


def test_windows_earliest_vs_latest_and_training_cutoff():
    frames = _frames(100)
    ref, cur, kind = select_windows(frames, window=30, min_frames=10, cutoff=None)
    assert list(ref["x"]) == list(range(30)) and list(cur["x"]) == list(range(70, 100))
    assert kind == "earliest"

    cutoff = T0 + timedelta(seconds=59)
    ref, cur, kind = select_windows(frames, window=30, min_frames=10, cutoff=cutoff)
    assert list(ref["x"]) == list(range(30, 60)) and list(cur["x"]) == list(range(70, 100))
    assert kind == "before training cutoff"

    ref, cur, _ = select_windows(_frames(40), window=30, min_frames=10, cutoff=None)
    assert set(ref["x"]).isdisjoint(cur["x"])  # never the same frame in both windows

    assert "too few frames" in select_windows(_frames(25), window=30, min_frames=10, cutoff=None)


def test_drift_report_flags_the_shifted_camera_only(tmp_path, database_url: str | None):
    loop = make_loop(tmp_path, database_url=database_url)
    rng = np.random.default_rng(7)
    n = 120
    steady = frame_features(rng, 2 * n, brightness=120, sharpness=300)
    shifted = pd.concat(
        [
            frame_features(rng, n, brightness=120, sharpness=300),
            frame_features(rng, n, brightness=70, sharpness=120),  # dusk, and a smudged lens
        ],
        ignore_index=True,
    )
    loop.add_frames("cam-steady", count=2 * n, features=steady, boxes_per_frame=0)
    loop.add_frames("cam-shifted", count=2 * n, features=shifted, boxes_per_frame=0)
    loop.add_frames("cam-new", count=20, boxes_per_frame=0)

    md = loop.drift_report(window_frames=n)
    cameras = parse_drift_metadata(md)
    assert set(cameras) == {"cam-steady", "cam-shifted"}
    assert cameras["cam-shifted"]["drifted"] is True
    assert cameras["cam-shifted"]["p_values"]["brightness"] < 1e-6
    assert cameras["cam-shifted"]["drift_share"] >= 2 / 6
    assert cameras["cam-steady"]["drifted"] is False
    assert cameras["cam-steady"]["min_p_value"] > 0.05
    assert set(cameras["cam-steady"]["p_values"]) == set(FEATURES)
    assert md["drifted_cameras"].value == "cam-shifted"
    assert "cam-new" in md["skipped"].value and "too few frames" in md["skipped"].value
    assert "| cam-shifted | True |" in md["summary"].value

    key = md["cam-shifted/report"].value
    assert key.startswith("reports/drift/cam-shifted/")
    report = loop.settings.stored_file(key)
    assert report is not None and report.stat().st_size > 10_000
    assert report.parent == loop.settings.reports_dir / "drift" / "cam-shifted"
    # Absolute, on the API (the link opens from the Dagster UI, on another port).
    assert md["cam-shifted/report_url"].value == (
        f"http://127.0.0.1:8000/reports/drift/cam-shifted/{report.name}"
    )

    with loop.store.connect() as con:
        rows = drift.latest_per_camera(con=con)
    assert [(r["camera_id"], r["drifted"]) for r in rows] == [
        ("cam-shifted", True),
        ("cam-steady", False),
    ]
    assert rows[0]["p_values"]["brightness"] == pytest.approx(
        cameras["cam-shifted"]["p_values"]["brightness"]
    )
    # Relative to the data folder: a copied or moved folder keeps its report links.
    assert rows[0]["report_path"] == report.relative_to(loop.settings.data_dir).as_posix()
    assert rows[0]["reference_frames"] == n


def test_the_evidently_report_states_the_loops_drift_share_threshold(tmp_path):
    """The HTML report said "Dataset drift detection threshold is 0.5" (Evidently's default)
    while the console and the drift sensor use 0.3: a camera with 2 of 6 features drifted
    was "NOT detected" there and drifted everywhere else. The report now agrees."""
    from assets.drift import run_drift
    from edgeloop.rules import DRIFT_P_VALUE, DRIFT_SHARE

    rng = np.random.default_rng(3)

    def features(n: int, **shift: float) -> pd.DataFrame:
        return pd.DataFrame({f: rng.normal(100, 10, n) + shift.get(f, 0.0) for f in FEATURES})

    snapshot, result = run_drift(features(120), features(120, brightness=-40, sharpness=-40))
    assert result.drifted_features == ["brightness", "sharpness"]
    assert DRIFT_SHARE < result.drift_share == 2 / 6 < 0.5

    report = tmp_path / "report.html"
    snapshot.save_html(str(report))
    html = report.read_text()
    assert f"Dataset drift detection threshold is {DRIFT_SHARE:g}" in html
    assert "Dataset Drift is detected" in html
    assert "threshold is 0.5" not in html
    [count] = [
        m["config"]
        for m in json.loads(snapshot.json())["metrics"]
        if m["config"]["type"].endswith(":DriftedColumnsCount")
    ]
    assert (count["drift_share"], count["num_threshold"]) == (DRIFT_SHARE, DRIFT_P_VALUE)
