"""The labeling queue never holds one JPEG twice: byte-identical frames (a replayed video,
a fixed camera on an empty scene) are stored, with their detections, but queued once."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from edgeloop.annotations import ReviewedBox
from edgeloop.store import SCHEMA_VERSION, Store, labels, queue
from edgeloop.store.ingest import BatchCounts, insert_batch, insert_new_batches

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_TS = pa.timestamp("us", tz="UTC")


def _digest(content: bytes) -> bytes:
    return hashlib.sha256(content).digest()


def _batch(
    frames: list[tuple[str, bytes | None]], *, camera: str = "cam-1", confidence: float = 0.55
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """``(frames, detections, queue_items)`` as ``api.ingest.tables_from_columns`` builds
    them: each frame (key, JPEG content) with one uncertain detection; a frame with content
    is queued, with the content's sha256 digest."""
    n = len(frames)
    keys = [key for key, _ in frames]
    at = [T0 + timedelta(seconds=i) for i in range(n)]
    frame_rows = pa.table(
        {
            "frame_key": keys,
            "camera_id": [camera] * n,
            "frame_index": list(range(n)),
            "captured_at": pa.array(at, _TS),
            "received_at": pa.array(at, _TS),
            "width": pa.array([640] * n, pa.int32()),
            "height": pa.array([480] * n, pa.int32()),
            "brightness": [100.0] * n,
            "contrast": [40.0] * n,
            "sharpness": [250.0] * n,
            "saturation": [30.0] * n,
            "detection_count": pa.array([1] * n, pa.int32()),
            "mean_confidence": [confidence] * n,
            "inference_ms": [25.0] * n,
            "model_version": ["1"] * n,
            "agent_id": ["agent-1"] * n,
            "jpeg_path": [f"/frames/{key}.jpg" if c is not None else None for key, c in frames],
        }
    )
    detections = pa.table(
        {
            "detection_id": [f"{key}:0" for key in keys],
            "frame_key": keys,
            "camera_id": [camera] * n,
            "captured_at": pa.array(at, _TS),
            "class_id": pa.array([0] * n, pa.int32()),
            "class_name": ["Normal"] * n,
            "confidence": [confidence] * n,
            "x1": [10.0] * n,
            "y1": [10.0] * n,
            "x2": [60.0] * n,
            "y2": [120.0] * n,
            "uncertain": [True] * n,
            "model_version": ["1"] * n,
        }
    )
    queued = [(key, content) for key, content in frames if content is not None]
    queue_items = pa.table(
        {
            "frame_key": [key for key, _ in queued],
            "camera_id": [camera] * len(queued),
            "priority": [0.9 - 0.01 * i for i in range(len(queued))],
            "uncertain_count": pa.array([1] * len(queued), pa.int32()),
            "created_at": pa.array([T0] * len(queued), _TS),
            "updated_at": pa.array([T0] * len(queued), _TS),
            "jpeg_sha256": pa.array([_digest(c) for _, c in queued], pa.binary()),
        }
    )
    return frame_rows, detections, queue_items


def _insert(con: object, frames: list[tuple[str, bytes | None]]) -> BatchCounts:
    f, d, q = _batch(frames)
    return insert_batch(con=con, frames=f, detections=d, queue_items=q)  # type: ignore[arg-type]


def _queued_keys(con: object) -> list[str]:
    rows = con.execute("SELECT frame_key FROM labeling_queue ORDER BY frame_key")  # type: ignore[attr-defined]
    return [row[0] for row in rows.fetchall()]


def _stored(con: object, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[attr-defined]


def test_identical_jpegs_in_one_batch_are_queued_once_and_all_stored(store: Store) -> None:
    empty_scene, person = b"\xff\xd8\xff empty scene \xff\xd9", b"\xff\xd8\xff person \xff\xd9"
    with store.connect() as con:
        counts = _insert(con, [("a", empty_scene), ("b", empty_scene), ("c", person)])
        assert counts == BatchCounts(accepted=3, detections=3, queued=2)
        assert _queued_keys(con) == ["a", "c"]  # "a": the higher priority of the two
        assert _stored(con, "frames") == 3
        assert _stored(con, "prediction_logs") == 3


def test_a_jpeg_already_queued_or_labeled_is_not_queued_again(store: Store) -> None:
    scene, other = b"\xff\xd8\xff scene \xff\xd9", b"\xff\xd8\xff other \xff\xd9"
    with store.connect() as con:
        assert _insert(con, [("f1", scene)]).queued == 1
        # The camera replays its video: the same bytes under a new frame key.
        replay = _insert(con, [("f2", scene), ("f3", other)])
        assert (replay.accepted, replay.queued) == (2, 1)
        assert _queued_keys(con) == ["f1", "f3"]

        # Labeled (and so no longer pending), its content still counts.
        items, _ = queue.list_items(con=con, status="pending", camera_id=None, limit=10, offset=0)
        [item] = [i for i in items if i["frame_key"] == "f1"]
        labels.create(
            con=con,
            item_id=item["item_id"],
            frame_key="f1",
            camera_id="cam-1",
            boxes=[ReviewedBox(bbox_xyxy=(10, 10, 60, 120), class_id=0, class_name="Normal")],
            labeler="alice",
            labeled_at=T0 + timedelta(minutes=5),
        )
        assert _insert(con, [("f4", scene)]).queued == 0
        assert _queued_keys(con) == ["f1", "f3"]
        assert _stored(con, "frames") == 4
        # A frame stored before (same key) is skipped as ever, queued or not.
        again = _insert(con, [("f3", other), ("f5", b"\xff\xd8\xff new \xff\xd9")])
        assert (again.accepted, again.queued, again.skipped) == (1, 1, ("f3",))


def test_batches_written_together_are_deduplicated_across_each_other(store: Store) -> None:
    """The API's group commit (``insert_new_batches``) counts each batch's own items."""
    scene = b"\xff\xd8\xff scene \xff\xd9"
    first = _batch([("g1", scene), ("g2", b"\xff\xd8\xff g2 \xff\xd9")])
    second = _batch([("g3", scene), ("g4", b"\xff\xd8\xff g4 \xff\xd9")], camera="cam-2")
    with store.connect() as con:
        counts = insert_new_batches(con=con, batches=[first, second])
        assert counts == [
            BatchCounts(accepted=2, detections=2, queued=2),
            BatchCounts(accepted=2, detections=2, queued=1),
        ]
        assert _queued_keys(con) == ["g1", "g2", "g4"]


def test_frames_without_a_digest_are_never_deduplicated(store: Store) -> None:
    """Queue rows built without the column (test fixtures, the fleet bench) queue as before."""
    f, d, q = _batch([("n1", b"x"), ("n2", b"x")])
    with store.connect() as con:
        counts = insert_batch(con=con, frames=f, detections=d, queue_items=q.drop(["jpeg_sha256"]))
        assert counts.queued == 2


def test_a_version_3_file_migrates_its_queue_rows_and_keeps_them(tmp_path: Path) -> None:
    """Items queued before the content hash keep a NULL digest and stay pending; new
    frames are deduplicated among themselves from then on."""
    import duckdb

    from edgeloop.store.migrations import MIGRATIONS

    path = tmp_path / "v3.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version in (1, 2, 3):
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?)", [version])
        for key in ("old-1", "old-2"):  # two items of one JPEG, queued before version 4
            con.execute(
                "INSERT INTO labeling_queue (frame_key, camera_id, priority, uncertain_count, "
                "created_at, updated_at) VALUES (?, 'cam-1', 0.5, 1, ?, ?)",
                [key, T0, T0],
            )
    scene = b"\xff\xd8\xff scene \xff\xd9"
    with Store(path).connect() as con:
        assert con.execute("SELECT max(version) FROM schema_version").fetchone() == (
            SCHEMA_VERSION,
        )
        rows = con.execute(
            "SELECT frame_key, status, jpeg_sha256 FROM labeling_queue ORDER BY frame_key"
        ).fetchall()
        assert rows == [("old-1", "pending", None), ("old-2", "pending", None)]
        assert _insert(con, [("new-1", scene), ("new-2", scene)]).queued == 1
        assert _insert(con, [("new-3", scene)]).queued == 0
        assert _queued_keys(con) == ["new-1", "old-1", "old-2"]
