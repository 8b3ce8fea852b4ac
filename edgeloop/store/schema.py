"""The DuckDB store: schema, migrations, and short-lived connections with retry on lock.

DuckDB locks its file for one process: while one process holds it open, no other can
open it, not even read-only. So every caller opens, works, and closes — never holds a
connection across slow work (copy rows out as Arrow, release, then compute) — and
retries on the lock error with backoff, as ``dagster-duckdb`` does.

Tables (seed names): ``frames``, ``prediction_logs`` (detections), ``labeling_queue``,
``reviewed_labels``, ``retraining_events``, ``model_deployments``; plus
``training_runs`` and ``drift_reports``. Boxes are xyxy pixels of the original frame.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Each migration runs once, in order; every statement is idempotent on its own too.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """
        CREATE TABLE IF NOT EXISTS frames (
            frame_key VARCHAR PRIMARY KEY,
            camera_id VARCHAR NOT NULL,
            frame_index BIGINT NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL,
            received_at TIMESTAMPTZ NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            brightness DOUBLE NOT NULL,
            contrast DOUBLE NOT NULL,
            sharpness DOUBLE NOT NULL,
            saturation DOUBLE NOT NULL,
            detection_count INTEGER NOT NULL,
            mean_confidence DOUBLE,
            inference_ms DOUBLE NOT NULL,
            model_version VARCHAR NOT NULL,
            agent_id VARCHAR NOT NULL,
            jpeg_path VARCHAR
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS prediction_logs (
            detection_id VARCHAR PRIMARY KEY,
            frame_key VARCHAR NOT NULL,
            camera_id VARCHAR NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL,
            class_id INTEGER NOT NULL,
            class_name VARCHAR NOT NULL,
            confidence DOUBLE NOT NULL,
            x1 DOUBLE NOT NULL,
            y1 DOUBLE NOT NULL,
            x2 DOUBLE NOT NULL,
            y2 DOUBLE NOT NULL,
            uncertain BOOLEAN NOT NULL,
            model_version VARCHAR NOT NULL
        )
        """,
        "CREATE SEQUENCE IF NOT EXISTS labeling_queue_seq START 1",
        """
        CREATE TABLE IF NOT EXISTS labeling_queue (
            item_id BIGINT PRIMARY KEY DEFAULT nextval('labeling_queue_seq'),
            frame_key VARCHAR NOT NULL UNIQUE,
            camera_id VARCHAR NOT NULL,
            priority DOUBLE NOT NULL,
            uncertain_count INTEGER NOT NULL,
            status VARCHAR NOT NULL DEFAULT 'pending',
            skip_count INTEGER NOT NULL DEFAULT 0,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        )
        """,
        "CREATE SEQUENCE IF NOT EXISTS reviewed_labels_seq START 1",
        """
        CREATE TABLE IF NOT EXISTS reviewed_labels (
            label_id BIGINT PRIMARY KEY DEFAULT nextval('reviewed_labels_seq'),
            item_id BIGINT NOT NULL,
            frame_key VARCHAR NOT NULL,
            camera_id VARCHAR NOT NULL,
            boxes JSON NOT NULL,
            box_count INTEGER NOT NULL,
            labeler VARCHAR NOT NULL,
            labeled_at TIMESTAMPTZ NOT NULL
        )
        """,
        "CREATE SEQUENCE IF NOT EXISTS retraining_events_seq START 1",
        """
        CREATE TABLE IF NOT EXISTS retraining_events (
            event_id BIGINT PRIMARY KEY DEFAULT nextval('retraining_events_seq'),
            created_at TIMESTAMPTZ NOT NULL,
            trigger VARCHAR NOT NULL,
            camera_id VARCHAR,
            decision VARCHAR NOT NULL,
            reason VARCHAR NOT NULL,
            labels_since_training INTEGER NOT NULL,
            run_key VARCHAR,
            dagster_run_id VARCHAR,
            details JSON
        )
        """,
        "CREATE SEQUENCE IF NOT EXISTS model_deployments_seq START 1",
        """
        CREATE TABLE IF NOT EXISTS model_deployments (
            deployment_id BIGINT PRIMARY KEY DEFAULT nextval('model_deployments_seq'),
            created_at TIMESTAMPTZ NOT NULL,
            model_name VARCHAR NOT NULL,
            version VARCHAR NOT NULL,
            alias VARCHAR NOT NULL,
            previous_version VARCHAR,
            action VARCHAR NOT NULL,
            actor VARCHAR NOT NULL,
            reason VARCHAR NOT NULL,
            metrics JSON
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS training_runs (
            mlflow_run_id VARCHAR PRIMARY KEY,
            started_at TIMESTAMPTZ NOT NULL,
            label_cutoff TIMESTAMPTZ NOT NULL,
            label_count INTEGER NOT NULL,
            dataset_version VARCHAR NOT NULL,
            model_version VARCHAR,
            dagster_run_id VARCHAR
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS drift_reports (
            camera_id VARCHAR NOT NULL,
            computed_at TIMESTAMPTZ NOT NULL,
            reference_frames INTEGER NOT NULL,
            current_frames INTEGER NOT NULL,
            drift_share DOUBLE NOT NULL,
            min_p_value DOUBLE,
            drifted BOOLEAN NOT NULL,
            p_values JSON NOT NULL,
            report_path VARCHAR,
            PRIMARY KEY (camera_id, computed_at)
        )
        """,
        "CREATE INDEX IF NOT EXISTS prediction_logs_frame ON prediction_logs (frame_key)",
        "CREATE INDEX IF NOT EXISTS frames_camera_time ON frames (camera_id, captured_at)",
    ],
}


class StoreLockedError(RuntimeError):
    """The DuckDB file stayed locked by another process past the retry deadline."""


def _is_lock_error(exc: BaseException) -> bool:
    # DuckDB raises IOException "Could not set lock on file ... Conflicting lock is held".
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class Store:
    """Short-lived, retrying access to the edgeloop DuckDB file.

    Args:
        path: the DuckDB file; its folder is created on first use.
        lock_timeout_s: how long ``connect`` retries while another process holds the file.

    One ``Store`` may be shared by threads: connections from one process are serialised
    by a process-wide lock, since DuckDB allows one writing process at a time anyway.
    """

    _process_lock = threading.RLock()

    def __init__(self, path: Path | str, *, lock_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self._migrated = False

    def _open(self) -> duckdb.DuckDBPyConnection:
        @retry(
            retry=retry_if_exception(_is_lock_error),
            stop=stop_after_delay(self.lock_timeout_s),
            wait=wait_exponential_jitter(initial=0.02, max=1.0),
            reraise=True,
        )
        def _connect() -> duckdb.DuckDBPyConnection:
            return duckdb.connect(str(self.path))

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _connect()
        except duckdb.IOException as exc:
            if _is_lock_error(exc):
                raise StoreLockedError(
                    f"{self.path} stayed locked by another process for {self.lock_timeout_s:.0f} s; "
                    "stop the process holding it (a long-running query?) and retry"
                ) from exc
            raise

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file (retrying while locked), migrate once, yield, and always close.

        Raises:
            StoreLockedError: another process held the file past ``lock_timeout_s``.
        """
        with self._process_lock:
            con = self._open()
            try:
                if not self._migrated:
                    migrate(con)
                    self._migrated = True
                yield con
            finally:
                con.close()


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the schema to ``SCHEMA_VERSION``; idempotent. Returns the version reached."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    # fetchall, not fetchone: DuckDB 2 keeps a partly fetched result open, and the next
    # con.sql() on this connection then fails with "unfinished result from execute()".
    rows = con.execute("SELECT max(version) FROM schema_version").fetchall()
    current = int(rows[0][0]) if rows and rows[0][0] is not None else 0
    for version in sorted(v for v in MIGRATIONS if v > current):
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?)", [version])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        logger.info("DuckDB schema migrated to version %s", version)
        current = version
    return current


def labels_since_last_training(con: duckdb.DuckDBPyConnection) -> int:
    """Reviewed labels newer than the label cutoff of the last training run (all, if none)."""
    row = con.execute(
        """
        SELECT count(*) FROM reviewed_labels
        WHERE labeled_at > coalesce(
            (SELECT max(label_cutoff) FROM training_runs), TIMESTAMPTZ '1970-01-01 00:00:00+00')
        """
    ).fetchall()  # fetchall: leave no partly fetched result open (see migrate)
    return int(row[0][0]) if row else 0


LATEST_LABELS_SQL = """
SELECT * FROM reviewed_labels
QUALIFY row_number() OVER (PARTITION BY frame_key ORDER BY labeled_at DESC, label_id DESC) = 1
"""
"""The latest reviewed label of each frame (a re-label replaces the earlier one), as SQL to
use in a CTE: a relation registered as a view would keep the connection alive after close."""


def latest_labels(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    """The latest reviewed label of each frame (a re-label replaces the earlier one)."""
    return con.sql(LATEST_LABELS_SQL)
