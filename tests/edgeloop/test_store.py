"""The DuckDB store against a real file: migrations, lock retry, label counting."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgeloop.annotations import ReviewedBox
from edgeloop.store import (
    SCHEMA_VERSION,
    AnyStore,
    Store,
    StoreLockedError,
    labels,
    migrate,
    queue,
)

SEED_TABLES = {"frames", "prediction_logs", "labeling_queue", "reviewed_labels"}
SEED_TABLES |= {"retraining_events", "model_deployments"}


def test_schema_has_the_seed_tables_and_migrates_idempotently(tmp_path: Path) -> None:
    store = Store(tmp_path / "db" / "edgeloop.duckdb")
    with store.connect() as con:
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
        assert tables >= SEED_TABLES
        assert migrate(con) == SCHEMA_VERSION
        assert migrate(con) == SCHEMA_VERSION
        versions = con.execute("SELECT list(version ORDER BY version) FROM schema_version")
        assert versions.fetchone() == (list(range(1, SCHEMA_VERSION + 1)),)  # each once
    # A second Store on the same file finds the schema in place.
    with Store(store.path).connect() as con:
        assert con.execute("SELECT max(version) FROM schema_version").fetchone() == (
            SCHEMA_VERSION,
        )


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_connect_waits_for_another_process_to_release_the_file(tmp_path: Path) -> None:
    path = tmp_path / "edgeloop.duckdb"
    with Store(path).connect():
        pass
    holder = _hold_lock(path, 1.5)
    started = time.monotonic()
    with Store(path, lock_timeout_s=30).connect() as con:
        assert con.execute("SELECT 1").fetchone() == (1,)
    assert holder.wait(timeout=10) == 0
    assert time.monotonic() - started >= 0.5  # it really waited for the holder


def test_connect_gives_a_clear_error_when_the_lock_is_never_released(tmp_path: Path) -> None:
    path = tmp_path / "edgeloop.duckdb"
    with Store(path).connect():
        pass
    holder = _hold_lock(path, 20)
    try:
        with (
            pytest.raises(StoreLockedError, match="stayed locked by another process"),
            Store(path, lock_timeout_s=1).connect(),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()


BOX = {"bbox_xyxy": [1.0, 2.0, 30.0, 40.0], "class_id": 0, "class_name": "Normal"}


def _label(con: object, frame_key: str, at: datetime, boxes: int = 1) -> None:
    con.execute(  # type: ignore[attr-defined]
        "INSERT INTO reviewed_labels (item_id, frame_key, camera_id, boxes, box_count, labeler, labeled_at)"
        " VALUES (1, ?, 'cam', ?, ?, 'tester', ?)",
        [frame_key, json.dumps([BOX] * boxes), boxes, at],
    )


def test_labels_since_last_training_counts_after_the_cutoff(store: AnyStore) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with store.connect() as con:
        for i in range(5):
            _label(con, f"f{i}", t0 + timedelta(minutes=i))
        assert labels.since_last_training(con=con) == 5
        con.execute(
            "INSERT INTO training_runs VALUES ('run1', ?, ?, 3, 'v1', '2', NULL)",
            [t0 + timedelta(hours=1), t0 + timedelta(minutes=2)],
        )
        assert labels.since_last_training(con=con) == 2
        # A re-label of a frame replaces the earlier one in the dataset view, and the frame
        # counts once: labels since training count frames, not label rows.
        _label(con, "f0", t0 + timedelta(minutes=10), boxes=3)
        _label(con, "f4", t0 + timedelta(minutes=11), boxes=2)
        assert labels.since_last_training(con=con) == 3
        latest = {r["frame_key"]: r for r in labels.latest_with_frames(con=con)}
        assert len(latest) == 5
        assert latest["f0"]["boxes"] == [ReviewedBox.model_validate(BOX)] * 3
        assert len(latest["f4"]["boxes"]) == 2


def test_a_version_1_file_migrates_and_events_record_their_runs(tmp_path: Path) -> None:
    """A DuckDB file from before migration 2 gains the run columns, keeping its rows."""
    import duckdb

    from edgeloop.store import retraining
    from edgeloop.store.migrations import MIGRATIONS

    path = tmp_path / "v1.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in MIGRATIONS[1]:
            con.execute(statement)
        con.execute("INSERT INTO schema_version VALUES (1)")
        con.execute(
            "INSERT INTO retraining_events (created_at, trigger, decision, reason, "
            "labels_since_training, dagster_run_id) VALUES (now(), 'manual', 'launched', 'x', 0, 'r1')"
        )
    with Store(path).connect() as con:
        assert retraining.record_run(con=con, dagster_run_id="r1", run_status="started") == 1
        assert (
            retraining.record_run(
                con=con,
                dagster_run_id="r1",
                run_status="succeeded",
                candidate_version="2",
                outcome="promoted v2 to production (was v1)",
            )
            == 1
        )
        assert retraining.record_run(con=con, dagster_run_id="r1", run_status="failed") == 1
        assert retraining.record_run(con=con, dagster_run_id="other", run_status="failed") == 0
        [event] = retraining.recent(con=con)
    assert (event["run_status"], event["candidate_version"], event["outcome"]) == (
        "failed",
        "2",  # kept once set
        "promoted v2 to production (was v1)",
    )
    with pytest.raises(ValueError, match="run_status"), Store(path).connect() as con:
        retraining.record_run(con=con, dagster_run_id="r1", run_status="done")


def test_a_label_whose_companion_rows_fail_is_not_stored(store: AnyStore) -> None:
    """``labels.create``'s ``with_label`` runs in the label's transaction: when it raises,
    neither the label nor the item's new status is kept (the grid's verdicts rely on it)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with store.connect() as con:
        item_id = queue.ensure_item(con=con, frame_key="f0", camera_id="cam", now=now)

        def create(with_label: Callable[[int], None]) -> int:
            return labels.create(
                con=con,
                item_id=item_id,
                frame_key="f0",
                camera_id="cam",
                boxes=[ReviewedBox.model_validate(BOX)],
                labeler="tester",
                labeled_at=now,
                with_label=with_label,
            )

        def fail(label_id: int) -> None:
            assert label_id > 0
            raise RuntimeError("the verdicts could not be stored")

        with pytest.raises(RuntimeError, match="verdicts"):
            create(fail)
        assert con.execute("SELECT count(*) FROM reviewed_labels").fetchone() == (0,)
        assert queue.get_item(con=con, item_id=item_id)["status"] == "pending"  # type: ignore[index]
        kept: list[int] = []
        label_id = create(kept.append)
        assert kept == [label_id]
        assert queue.get_item(con=con, item_id=item_id)["status"] == "labeled"  # type: ignore[index]
