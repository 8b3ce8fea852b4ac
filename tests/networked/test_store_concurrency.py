"""The PostgreSQL store under the load several API replicas put on it: separate processes,
each with its own connection pool, against one real PostgreSQL 15 server.

Each check counts what a person would count: 20 labelers claiming at once get 20
different items; 20 labels posted at once on one item store one; one frame key ingested
by two processes at once is stored once; a label-count retrain is launched once when two
replicas push at the same moment.
"""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeloop.annotations import REVIEWED_BOXES
from edgeloop.store import SCHEMA_VERSION, migrate, queue, retraining
from edgeloop.store.batches import tables_from_rows
from edgeloop.store.ingest import insert_batch
from edgeloop.store.migrations import schema_version, statements
from edgeloop.store.postgres import PostgresStore
from edgeloop.store.queue import ClaimConflictError

pytestmark = pytest.mark.integration

WORKERS = 20
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def _frame(key: str, camera: str = "cam-1") -> dict[str, Any]:
    return {
        "frame_key": key,
        "camera_id": camera,
        "frame_index": 0,
        "captured_at": T0,
        "received_at": T0,
        "width": 640,
        "height": 480,
        "brightness": 100.0,
        "contrast": 40.0,
        "sharpness": 200.0,
        "saturation": 30.0,
        "detection_count": 0,
        "mean_confidence": None,
        "inference_ms": 20.0,
        "model_version": "1",
        "agent_id": "agent-1",
        "jpeg_path": f"frames/{camera}/{key}.jpg",
    }


def _fill_queue(url: str, n: int) -> None:
    rows = [_frame(f"cam-1:{i:03d}") for i in range(n)]
    items = [
        {
            "frame_key": r["frame_key"],
            "camera_id": "cam-1",
            "priority": 0.5,  # ties everywhere: the harder case for SKIP LOCKED
            "uncertain_count": 1,
            "created_at": T0,
            "updated_at": T0,
        }
        for r in rows
    ]
    batch = tables_from_rows(rows, queue=items)
    store = PostgresStore(url)
    with store.connect() as con:
        insert_batch(
            con=con, frames=batch.frames, detections=batch.detections, queue_items=batch.queue
        )
    store.close()


def _in_processes(target: Any, args: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*a, barrier, results)`` in one process per ``a``, all released at once."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(args))
    results = ctx.Queue()
    processes = [ctx.Process(target=target, args=(*a, barrier, results)) for a in args]
    for p in processes:
        p.start()
    found = [results.get(timeout=120) for _ in processes]
    for p in processes:
        p.join(timeout=30)
        assert p.exitcode == 0
    return found


def _claim(url: str, labeler: str, barrier: Any, results: Any) -> None:
    store = PostgresStore(url, pool_max_size=1)
    with store.connect() as con:
        barrier.wait()
        item = queue.claim_next(
            con=con, camera_id=None, labeler=labeler, now=datetime.now(UTC), lease=LEASE
        )
    results.put((labeler, None if item is None else int(item["item_id"])))
    store.close()


def test_twenty_labelers_claiming_at_once_get_twenty_different_items(
    postgres_database: str,
) -> None:
    _fill_queue(postgres_database, 30)
    claims = _in_processes(_claim, [(postgres_database, f"labeler-{i}") for i in range(WORKERS)])
    items = [item for _, item in claims]
    assert None not in items
    assert len(set(items)) == WORKERS
    store = PostgresStore(postgres_database)
    with store.connect() as con:
        held = {
            row[0]: row[1]
            for row in con.execute(
                "SELECT item_id, claimed_by FROM labeling_queue WHERE claimed_by IS NOT NULL"
            ).fetchall()
        }
    store.close()
    assert held == {item: labeler for labeler, item in claims}


def _label(url: str, labeler: str, item_id: int, barrier: Any, results: Any) -> None:
    from edgeloop.store import labels

    store = PostgresStore(url, pool_max_size=1)
    boxes = REVIEWED_BOXES.validate_python(
        [{"bbox_xyxy": [1, 2, 30, 40], "class_id": 0, "class_name": "Normal"}]
    )
    with store.connect() as con:
        barrier.wait()
        try:
            labels.create(
                con=con,
                item_id=item_id,
                frame_key="cam-1:000",
                camera_id="cam-1",
                boxes=boxes,
                labeler=labeler,
                labeled_at=datetime.now(UTC),
            )
            results.put("stored")
        except ClaimConflictError:
            results.put("conflict")
    store.close()


def test_twenty_labels_posted_at_once_on_one_item_store_one(postgres_database: str) -> None:
    _fill_queue(postgres_database, 1)
    store = PostgresStore(postgres_database)
    with store.connect() as con:
        item = queue.item_for_frame(con=con, frame_key="cam-1:000")
    assert item is not None
    outcomes = _in_processes(
        _label, [(postgres_database, f"labeler-{i}", int(item["item_id"])) for i in range(WORKERS)]
    )
    assert sorted(outcomes) == ["conflict"] * (WORKERS - 1) + ["stored"]
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM reviewed_labels").fetchone() == (1,)
        assert queue.get_item(con=con, item_id=int(item["item_id"]))["status"] == "labeled"
    store.close()


def _ingest(url: str, camera: str, barrier: Any, results: Any) -> None:
    store = PostgresStore(url, pool_max_size=1)
    batch = tables_from_rows([_frame("shared:1", camera)])
    with store.connect() as con:
        barrier.wait()
        counts = insert_batch(
            con=con, frames=batch.frames, detections=batch.detections, queue_items=batch.queue
        )
    results.put((camera, counts.accepted, len(counts.skipped), len(counts.conflicts)))
    store.close()


def test_one_frame_key_from_two_processes_at_once_is_stored_once(postgres_database: str) -> None:
    outcomes = _in_processes(_ingest, [(postgres_database, "cam-a"), (postgres_database, "cam-b")])
    assert sum(accepted for _, accepted, _, _ in outcomes) == 1
    loser = next(o for o in outcomes if o[1] == 0)
    assert loser[2:] == (1, 1)  # skipped, and counted as a conflict: another camera sent it
    store = PostgresStore(postgres_database)
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM frames").fetchone() == (1,)
    store.close()


def _push(url: str, name: str, barrier: Any, results: Any) -> None:
    """What the API's push does under ``LAUNCH_LOCK``: check the run key, launch, record."""
    import time

    store = PostgresStore(url, pool_max_size=2)
    barrier.wait()
    with store.exclusive(retraining.LAUNCH_LOCK):
        with store.connect() as con:
            recorded = retraining.exists(con=con, run_key="labels:50")
        if not recorded:
            time.sleep(0.2)  # the launch over GraphQL
            with store.connect() as con:
                retraining.record(
                    con=con,
                    trigger="label_count",
                    decision="launched",
                    reason=f"pushed by {name}",
                    labels_since_training=50,
                    run_key="labels:50",
                )
    results.put(not recorded)
    store.close()


def test_pushes_from_several_replicas_launch_one_retrain(postgres_database: str) -> None:
    launched = _in_processes(_push, [(postgres_database, f"replica-{i}") for i in range(4)])
    assert sorted(launched) == [False, False, False, True]
    store = PostgresStore(postgres_database)
    with store.connect() as con:
        assert len(retraining.recent(con=con)) == 1
    store.close()


def test_a_database_of_an_older_version_migrates_forward_keeping_its_rows(
    postgres_database: str,
) -> None:
    """A database left at version 5 (as this version's predecessor would leave it) gains
    version 6 on first connect; its rows stay."""
    import psycopg

    from edgeloop.store.postgres import PostgresConnection

    with psycopg.connect(
        postgres_database, autocommit=True, cursor_factory=psycopg.RawCursor
    ) as raw:
        con = PostgresConnection(raw)
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version in range(1, 6):
            for statement in statements(version, "postgres"):
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?)", [version])
        _queue = tables_from_rows(
            [],
            queue=[
                {
                    "frame_key": "old:1",
                    "camera_id": "cam-1",
                    "priority": 0.9,
                    "uncertain_count": 1,
                    "created_at": T0,
                    "updated_at": T0,
                }
            ],
        ).queue
        queue.insert_items(con=con, items=_queue)
        assert schema_version(con=con) == 5
    store = PostgresStore(postgres_database)
    with store.connect() as con:
        assert schema_version(con=con) == SCHEMA_VERSION
        assert migrate(con) == SCHEMA_VERSION
        item = queue.item_for_frame(con=con, frame_key="old:1")
        assert item is not None and item["priority"] == 0.9
        indexes = {
            row[0]
            for row in con.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'labeling_queue'"
            ).fetchall()
        }
    store.close()
    assert {"labeling_queue_order", "labeling_queue_jpeg_sha256_unique"} <= indexes


def test_a_networked_site_has_one_stack_id_whatever_the_data_folder(
    postgres_database: str, tmp_path: Any
) -> None:
    """API replicas and Dagster runs of one site each have a data folder of their own;
    the stack id they compare before a launch comes from the database they share."""
    from edgeloop.settings import LoopSettings

    replicas = [
        LoopSettings(data_dir=tmp_path / f"replica-{i}", database_url=postgres_database)
        for i in range(2)
    ]
    assert replicas[0].read_stack_id() is None
    ids = {settings.stack_id() for settings in replicas}
    assert len(ids) == 1 and len(ids.pop()) == 32
    assert replicas[1].read_stack_id() == replicas[0].stack_id()
    assert not any((tmp_path / f"replica-{i}" / "stack-id").exists() for i in range(2))
