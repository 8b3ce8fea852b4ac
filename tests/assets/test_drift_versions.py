"""The drift report per model version: windows split by the version behind each frame, the
promotion's class-mix shift, on a real store and a real Evidently run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from loopdata import T0, frame_features, make_loop

from assets.drift import parse_drift_metadata
from assets.drift_versions import split_by_version
from edgeloop.settings import MODEL_NAME
from edgeloop.store import deployments, drift


def test_split_by_version_runs_each_versions_drift_only_when_the_window_mixes_them() -> None:
    reference = pd.DataFrame({"model_version": ["1"] * 40})
    one = split_by_version(
        reference,
        pd.DataFrame({"model_version": ["1"] * 40}),
        min_frames=30,
        drift_share=lambda r, c: 0.5,
    )
    assert (one.model_version, one.reference_model_version, one.changed) == ("1", "1", False)
    assert one.versions == {"1": {"frames": 40, "drift_share": None}}
    mixed = pd.DataFrame({"model_version": ["1"] * 10 + ["2"] * 35})
    two = split_by_version(reference, mixed, min_frames=30, drift_share=lambda r, c: len(c) / 100)
    assert (two.model_version, two.changed) == ("2", True)
    assert two.versions == {
        "1": {"frames": 10, "drift_share": None},  # too few frames to test on their own
        "2": {"frames": 35, "drift_share": 0.35},
    }


def test_the_report_records_the_version_behind_each_window_and_the_promotion(
    tmp_path: Path, database_url: str | None
) -> None:
    loop = make_loop(tmp_path, database_url=database_url)
    rng = np.random.default_rng(3)
    n = 120
    loop.add_frames("gate", count=n, features=frame_features(rng, n), boxes_per_frame=1)
    promoted_at = T0 + timedelta(seconds=n)
    with loop.store.connect() as con:
        deployments.record(
            con=con,
            model_name=MODEL_NAME,
            version="2",
            alias="production",
            previous_version="1",
            action="promote",
            actor="test",
            reason="a test promotion",
            created_at=promoted_at,
        )
    # After the promotion: 40 frames still from version 1 (agents not yet updated), then 80
    # darker frames from version 2.
    loop.add_frames(
        "gate", count=40, start=promoted_at, features=frame_features(rng, 40), boxes_per_frame=1
    )
    loop.add_frames(
        "gate",
        count=80,
        start=promoted_at + timedelta(seconds=40),
        features=frame_features(rng, 80, brightness=60),
        boxes_per_frame=1,
        model_version="2",
    )
    camera = parse_drift_metadata(loop.drift_report(window_frames=n))["gate"]
    assert camera["model_version"] == "2" and camera["promoted_version"] == "2"
    assert camera["class_mix_shift"] == 0.0  # one class before and after
    with loop.store.connect() as con:
        [row] = drift.latest_per_camera(con=con)
    assert (row["model_version"], row["reference_model_version"]) == ("2", "1")
    versions = row["model_versions"]
    assert versions["1"]["frames"] == 40 and versions["2"]["frames"] == 80
    # The darker frames are version 2's: its own drift is high, version 1's is not.
    assert versions["2"]["drift_share"] > versions["1"]["drift_share"]
