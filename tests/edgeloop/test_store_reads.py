"""Reads the API serves at fleet scale, on each backend: the incremental
confidence histograms equal a full scan, and the inspection page equals the plain join."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from edgeloop.store import AnyStore, frames
from edgeloop.store.frames import ConfidenceHistograms, DetectionFilter


def _add_detections(con: object, start: int, n: int, rng: np.random.Generator) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(start, start + n):
        camera = f"cam-{i % 3}"
        key = f"{camera}:{i}"
        con.execute(  # type: ignore[attr-defined]
            "INSERT INTO frames VALUES (?, ?, ?, ?, ?, 640, 480, 1, 1, 1, 1, 2, 0.5, 20, '1', "
            "'a', NULL)",
            [key, camera, i, t0 + timedelta(seconds=i), t0 + timedelta(seconds=i)],
        )
        for j, confidence in enumerate(rng.uniform(0, 1, 2)):
            con.execute(  # type: ignore[attr-defined]
                "INSERT INTO prediction_logs VALUES (?, ?, ?, ?, 0, 'Normal', ?, 1, 1, 9, 9, "
                "false, '1')",
                [f"{key}:{j}", key, camera, t0 + timedelta(seconds=i), float(confidence)],
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
