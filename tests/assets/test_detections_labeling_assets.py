"""detections and labeling_queue on a real DuckDB file (direct calls and dg.materialize)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from loopdata import T0, make_loop

from assets.detections import detections
from assets.labeling import DRIFT_BOOST, labeling_queue
from edgeloop.rules import UNCERTAINTY_HIGH, UNCERTAINTY_LOW, uncertainty_score
from edgeloop.store import queue

BAND = {"low": UNCERTAINTY_LOW, "high": UNCERTAINTY_HIGH}


def rerank_queue(store) -> int:
    with store.connect() as con:
        return queue.rerank(con=con, drift_boost=DRIFT_BOOST, **BAND)


def boost_camera_queue(store, camera_id: str, factor: float) -> int:
    with store.connect() as con:
        return queue.boost_camera(con=con, camera_id=camera_id, factor=factor, **BAND)


def _priorities(loop) -> dict[str, float]:
    with loop.store.connect() as con:
        return dict(con.execute("SELECT frame_key, priority FROM labeling_queue").fetchall())


def _expected(loop, frame_key: str) -> float:
    return max(
        uncertainty_score(d["confidence"]) for d in loop.detections if d["frame_key"] == frame_key
    )


def test_detections_summarises_per_camera(tmp_path, database_url: str | None):
    loop = make_loop(tmp_path, database_url=database_url)
    loop.add_frames("cam-a", count=4, boxes_per_frame=2)
    loop.add_frames("cam-b", count=3, boxes_per_frame=1, start=T0 + timedelta(hours=1))

    result = dg.materialize([detections], resources={"store": loop.store_resource})

    assert result.success
    md = result.asset_materializations_for_node("detections")[0].metadata
    assert md["frames"].value == 7
    assert md["detections"].value == 4 * 2 + 3
    assert md["cam-a/frames"].value == 4
    assert md["cam-b/detections"].value == 3
    uncertain = sum(d["uncertain"] for d in loop.detections)
    assert md["uncertain_detections"].value == uncertain
    assert md["first_captured"].value == "2025-06-01T12:00:00Z"
    assert md["last_captured"].value == "2025-06-01T13:00:02Z"
    assert "| cam-a | 4 |" in md["per_camera"].value


def test_detections_fails_loudly_on_an_empty_store(tmp_path, database_url: str | None):
    loop = make_loop(tmp_path, database_url=database_url)
    with pytest.raises(dg.Failure, match="no frames stored yet"):
        detections(dg.build_asset_context(), store=loop.store_resource)


def test_rerank_uses_uncertainty_and_boosts_drifted_cameras(tmp_path, database_url: str | None):
    loop = make_loop(tmp_path, database_url=database_url)
    a = loop.add_frames("cam-a", count=4)
    b = loop.add_frames("cam-b", count=4, start=T0 + timedelta(minutes=5))
    loop.queue(a + b)
    with loop.store.connect() as con:  # cam-b's latest report drifted; an older one did not
        for camera, drifted, when in [
            ("cam-b", False, datetime(2025, 6, 1, tzinfo=UTC)),
            ("cam-b", True, datetime(2025, 6, 2, tzinfo=UTC)),
            ("cam-a", False, datetime(2025, 6, 2, tzinfo=UTC)),
        ]:
            con.execute(
                "INSERT INTO drift_reports (camera_id, computed_at, reference_frames, current"
                "_frames, drift_share, min_p_value, drifted, p_values, report_path) VALUES (?, ?, 10, 10, 0.5, 0.01, ?, '{}', NULL)",
                [camera, when, drifted],
            )

    assert rerank_queue(loop.store) == 8

    prio = _priorities(loop)
    for key in a:
        assert prio[key] == pytest.approx(_expected(loop, key))
    for key in b:
        assert prio[key] == pytest.approx(_expected(loop, key) * DRIFT_BOOST)


def test_boost_camera_queue_is_idempotent_and_leaves_other_cameras(
    tmp_path, database_url: str | None
):
    loop = make_loop(tmp_path, database_url=database_url)
    a = loop.add_frames("cam-a", count=3)
    b = loop.add_frames("cam-b", count=3, start=T0 + timedelta(minutes=5))
    loop.queue(a + b, priority=0.123)
    with loop.store.connect() as con:
        con.execute("UPDATE labeling_queue SET status = 'labeled' WHERE frame_key = ?", [a[0]])

    assert boost_camera_queue(loop.store, "cam-a", 3.0) == 2  # the labeled item is left alone
    assert boost_camera_queue(loop.store, "cam-a", 3.0) == 2  # again: no compounding

    prio = _priorities(loop)
    assert prio[a[0]] == pytest.approx(0.123)
    for key in a[1:]:
        assert prio[key] == pytest.approx(_expected(loop, key) * 3.0)
    for key in b:
        assert prio[key] == pytest.approx(0.123)
    assert boost_camera_queue(loop.store, "cam-unknown", 2.0) == 0
    with pytest.raises(ValueError, match="boost must be > 0"):
        boost_camera_queue(loop.store, "cam-a", 0.0)


def test_labeling_queue_asset_reports_pending_and_top_items(tmp_path, database_url: str | None):
    loop = make_loop(tmp_path, database_url=database_url)
    a = loop.add_frames("cam-a", count=5)
    loop.queue(a)

    result = dg.materialize(
        [labeling_queue],
        resources={"store": loop.store_resource},
        run_config={"ops": {"labeling_queue": {"config": {"top_items": 3}}}},
    )

    md = result.asset_materializations_for_node("labeling_queue")[0].metadata
    assert md["pending"].value == 5
    assert md["cam-a/pending"].value == 5
    top_rows = [
        r for r in md["top_items"].value.splitlines() if r.startswith("| ") and "cam-a" in r
    ]
    assert len(top_rows) == 3
    best = max(a, key=lambda k: (_expected(loop, k), k))
    assert best in top_rows[0]
