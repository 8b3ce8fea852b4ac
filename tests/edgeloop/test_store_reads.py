"""Reads the API serves at fleet scale, on each backend: the incremental
confidence histograms equal a full scan, and the inspection page equals the plain join."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from support import frame_row

from edgeloop.store import AnyStore, frames
from edgeloop.store.batches import tables_from_rows
from edgeloop.store.frames import ConfidenceHistograms, DetectionFilter
from edgeloop.store.ingest import insert_batch


def _add_detections(con: object, start: int, n: int, rng: np.random.Generator) -> None:
    """``n`` frames with 2 detections each, through the store's ingest writer."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    frame_rows, detection_rows = [], []
    for i in range(start, start + n):
        camera = f"cam-{i % 3}"
        key = f"{camera}:{i}"
        at = t0 + timedelta(seconds=i)
        frame_rows.append(
            frame_row(key, camera, at, frame_index=i, detection_count=2, mean_confidence=0.5)
        )
        for j, confidence in enumerate(rng.uniform(0, 1, 2)):
            detection_rows.append(
                {
                    "detection_id": f"{key}:{j}",
                    "frame_key": key,
                    "camera_id": camera,
                    "captured_at": at,
                    "class_id": 0,
                    "class_name": "Normal",
                    "confidence": float(confidence),
                    "x1": 1.0,
                    "y1": 1.0,
                    "x2": 9.0,
                    "y2": 9.0,
                    "uncertain": False,
                    "model_version": "1",
                }
            )
    batch = tables_from_rows(frame_rows, detection_rows)
    insert_batch(
        con=con,  # type: ignore[arg-type]
        frames=batch.frames,
        detections=batch.detections,
        queue_items=batch.queue,
    )


def _full_scan(con: object) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for camera, confidence in con.execute(  # type: ignore[attr-defined]
        "SELECT camera_id, confidence FROM prediction_logs"
    ).fetchall():
        counts = out.setdefault(camera, [0] * frames.CONFIDENCE_BINS)
        counts[min(int(confidence * frames.CONFIDENCE_BINS), frames.CONFIDENCE_BINS - 1)] += 1
    return out


def test_incremental_histograms_equal_a_full_scan_as_detections_arrive(store: AnyStore) -> None:
    rng = np.random.default_rng(0)
    histograms = ConfidenceHistograms()
    with store.connect() as con:
        assert histograms.read(con=con) == {}
        _add_detections(con, 0, 50, rng)
        assert histograms.read(con=con) == _full_scan(con)
        _add_detections(con, 50, 31, rng)
        first = histograms.read(con=con)
        assert first == _full_scan(con)
        assert sum(map(sum, first.values())) == 81 * 2
        assert histograms.read(con=con) == first  # nothing new: unchanged


def test_the_inspection_page_equals_the_plain_join(store: AnyStore) -> None:
    rng = np.random.default_rng(1)
    with store.connect() as con:
        _add_detections(con, 0, 120, rng)
        for where in (DetectionFilter(), DetectionFilter(camera_id="cam-1")):
            rows, total = frames.list_detections(con=con, where=where, limit=25, offset=10)
            camera = "" if where.camera_id is None else "WHERE p.camera_id = 'cam-1'"
            expected = con.execute(
                f"SELECT p.detection_id FROM prediction_logs p JOIN frames f USING (frame_key) "
                f"{camera} ORDER BY p.captured_at DESC, p.detection_id LIMIT 25 OFFSET 10"
            ).fetchall()
            assert [r["detection_id"] for r in rows] == [e[0] for e in expected]
            assert total == (240 if where.camera_id is None else 80)
            assert all(r["width"] == 640 and r["frame_index"] >= 0 for r in rows)


def test_each_cameras_newest_frame_and_the_drift_history_read_alike_on_both_backends(
    store: AnyStore,
) -> None:
    """The fleet and models panels' newest frame per camera (PostgreSQL reads it from an
    index, DuckDB with arg_max) and the drift panel's history (failed on PostgreSQL 15
    until its subquery had an alias)."""
    import json

    import pandas as pd

    from edgeloop.store import analytics, drift
    from edgeloop.store.batches import tables_from_rows

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        frame_row(
            f"{camera}:{i}",
            camera,
            t0 + timedelta(seconds=i),
            frame_index=i,
            received_at=t0 + timedelta(seconds=100 - i),  # the newest arrived first
            model_version=str(1 + i // 5),
            agent_id=f"agent-{camera}-{i % 2}",
        )
        for camera in ("cam-a", "cam-b", "cam-c")
        for i in range(12 if camera != "cam-b" else 3)
    ]
    batch = tables_from_rows(rows)
    reports = pd.DataFrame(
        {
            "camera_id": ["cam-a", "cam-b", "cam-a"],
            "computed_at": [t0, t0 + timedelta(minutes=30), t0 + timedelta(hours=1)],
            "reference_frames": [30, 30, 30],
            "current_frames": [30, 30, 30],
            "drift_share": [0.1, 0.5, 0.6],
            "min_p_value": [0.2, 0.01, 0.001],
            "drifted": [False, True, True],
            "p_values": [json.dumps({"brightness": p}) for p in (0.2, 0.01, 0.001)],
            "report_path": [None, None, "reports/drift/cam-a/x.html"],
        }
    )
    with store.connect() as con:
        from edgeloop.store.ingest import insert_batch

        insert_batch(
            con=con, frames=batch.frames, detections=batch.detections, queue_items=batch.queue
        )
        drift.insert(con=con, rows=reports)
        latest = analytics.camera_latest(con=con)
        history = analytics.drift_history(con=con, since=t0, limit=2)
    assert [(r["camera_id"], r["model_version"], r["agent_id"]) for r in latest] == [
        ("cam-a", "3", "agent-cam-a-1"),
        ("cam-b", "1", "agent-cam-b-0"),
        ("cam-c", "3", "agent-cam-c-1"),
    ]
    assert [r["captured_at"] for r in latest] == [t0 + timedelta(seconds=s) for s in (11, 2, 11)]
    assert [r["received_at"] for r in latest] == [t0 + timedelta(seconds=100)] * 3
    # The newest 2, oldest first; p-values parsed on both backends.
    assert [(r["camera_id"], r["drift_share"]) for r in history] == [("cam-b", 0.5), ("cam-a", 0.6)]
    assert history[1]["p_values"] == {"brightness": 0.001}


def test_a_read_beside_returns_its_rows_and_its_errors(store: AnyStore) -> None:
    """``read_beside`` (the batch fetch's detections read) gives the rows the same SQL
    gives on the connection, raises the read's own error when its rows are asked for,
    and lets the block's error through when the block fails first."""
    from edgeloop.store.connection import fetch_dicts, read_beside, store_errors

    with store.connect() as con:
        _add_detections(con, 0, 5, np.random.default_rng(0))
        sql = "SELECT detection_id, confidence FROM prediction_logs ORDER BY detection_id"
        with read_beside(con, sql) as rows:
            on_con = fetch_dicts(con.execute(sql))
            assert rows() == on_con and len(on_con) == 10
        with pytest.raises(store_errors()), read_beside(con, "SELECT * FROM no_table") as rows:
            rows()
        with pytest.raises(KeyError), read_beside(con, "SELECT * FROM no_table"):
            raise KeyError("the block's")
        assert len(fetch_dicts(con.execute(sql))) == 10  # the connection still answers
