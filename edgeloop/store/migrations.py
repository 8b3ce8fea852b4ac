"""The schema's migrations (the ``CREATE`` and ``ALTER`` statements of every table) and
their runner, for both backends: the DuckDB file and PostgreSQL (``edgeloop.store.postgres``,
which translates these DuckDB statements). Migrations 1-9 (the loop's tables) are here,
10 on (the site's own records) in ``edgeloop.store.migrations_site``; shared names (tables,
sequences, the rollups' binning) are in ``edgeloop.store.schema``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edgeloop.store.migrations_site import SITE_MIGRATIONS
from edgeloop.store.schema import Only, rollup_sql

if TYPE_CHECKING:
    from edgeloop.store.connection import Connection

logger = logging.getLogger(__name__)


# Each migration runs once, in order; every statement is idempotent on its own too.
MIGRATIONS: dict[int, list[str | Only]] = {
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
    # What became of the run an event launched: started / succeeded / failed, the
    # candidate version it registered and the promotion outcome.
    2: [
        "ALTER TABLE retraining_events ADD COLUMN IF NOT EXISTS run_status VARCHAR",
        "ALTER TABLE retraining_events ADD COLUMN IF NOT EXISTS candidate_version VARCHAR",
        "ALTER TABLE retraining_events ADD COLUMN IF NOT EXISTS outcome VARCHAR",
    ],
    # Claims (one item, one labeler, for a lease), explicit label edits, and the agents'
    # latest heartbeat (the console's fleet panel).
    3: [
        "ALTER TABLE labeling_queue ADD COLUMN IF NOT EXISTS claimed_by VARCHAR",
        "ALTER TABLE labeling_queue ADD COLUMN IF NOT EXISTS claimed_until TIMESTAMPTZ",
        "ALTER TABLE reviewed_labels ADD COLUMN IF NOT EXISTS replaces_label_id BIGINT",
        """
        CREATE TABLE IF NOT EXISTS agent_heartbeats (
            agent_id VARCHAR PRIMARY KEY,
            camera_id VARCHAR NOT NULL,
            host VARCHAR NOT NULL,
            agent_version VARCHAR NOT NULL,
            received_at TIMESTAMPTZ NOT NULL,
            sent_at TIMESTAMPTZ NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            model_version VARCHAR,
            source_connected BOOLEAN NOT NULL,
            reconnects BIGINT NOT NULL,
            frames_processed BIGINT NOT NULL,
            frames_skipped BIGINT NOT NULL,
            frames_per_s DOUBLE NOT NULL,
            inference_ms_p50 DOUBLE,
            inference_ms_p95 DOUBLE,
            spool_batches BIGINT NOT NULL,
            spool_bytes BIGINT NOT NULL,
            spool_dropped_batches BIGINT NOT NULL
        )
        """,
    ],
    # The queue's content hash: the sha256 (32 bytes) of each queued frame's JPEG, so a
    # byte-identical frame (a replayed video, a fixed camera on an empty scene) is never
    # queued twice (``edgeloop.store.queue.insert_items_sql``). Items queued before this
    # version keep a NULL hash and stay as they are: hashing their files here would hold
    # the file locked for minutes on a large queue. The index keeps the check a lookup,
    # not a scan of every item ever queued.
    4: [
        "ALTER TABLE labeling_queue ADD COLUMN IF NOT EXISTS jpeg_sha256 BLOB",
        "CREATE INDEX IF NOT EXISTS labeling_queue_jpeg_sha256 ON labeling_queue (jpeg_sha256)",
    ],
    # Paths relative to the data folder (``LoopSettings.stored_path``), so a copied or moved
    # folder reads and writes its own files (issue 20). Older rows named the folder's
    # absolute location: ``<root>/frames/<camera_id>/<file>.jpg`` and
    # ``<root>/reports/drift/<camera_id>/<stamp>.html`` keep their part from ``frames/`` and
    # ``reports/`` on.
    5: [
        Only(
            "duckdb",
            """
        UPDATE frames
        SET jpeg_path = 'frames/' || camera_id || '/' || regexp_extract(jpeg_path, '[^/]+$')
        WHERE starts_with(jpeg_path, '/') AND contains(jpeg_path, '/frames/' || camera_id || '/')
        """,
        ),
        Only(
            "duckdb",
            """
        UPDATE drift_reports
        SET report_path = regexp_extract(report_path, '(reports/drift/[^/]+/[^/]+)$', 1)
        WHERE NOT starts_with(report_path, 'reports/')
          AND regexp_matches(report_path, '(^|/)reports/drift/[^/]+/[^/]+$')
        """,
        ),
    ],
    # PostgreSQL, the networked store (issue 16). Rows older than version 5 exist only in
    # DuckDB files, so version 5 converts paths there only. The queue's read order gets
    # the index that lets
    # a claim (``ORDER BY ... LIMIT 1 FOR UPDATE SKIP LOCKED``) read one row, not sort
    # every pending item (DuckDB reads it in two passes instead, ``queue.next_item``);
    # frames and detections get the capture-time indexes the console's windows filter on
    # and the inspection page reads backwards (newest first), the queue panel's oldest
    # pending item one of its own;
    # the JPEG digest index becomes unique, so replicas cannot queue one JPEG twice;
    # ingest keeps each camera's confidence histogram (``frames.add_to_bins_sql``); the
    # site's stack id moves into the database (``edgeloop.store.stack``).
    6: [
        Only(
            "postgres",
            "CREATE INDEX IF NOT EXISTS labeling_queue_order ON labeling_queue "
            "(status, priority DESC, created_at DESC, item_id DESC)",
        ),
        Only(
            "postgres",
            "CREATE INDEX IF NOT EXISTS prediction_logs_time ON prediction_logs "
            "(captured_at, detection_id)",
        ),
        Only(
            "postgres",
            "CREATE INDEX IF NOT EXISTS prediction_logs_camera_time ON prediction_logs "
            "(camera_id, captured_at, detection_id)",
        ),
        Only(
            "postgres",
            "CREATE INDEX IF NOT EXISTS labeling_queue_age ON labeling_queue "
            "(status, created_at, item_id)",
        ),
        Only("postgres", "CREATE INDEX IF NOT EXISTS frames_time ON frames (captured_at)"),
        Only(
            "postgres",
            "CREATE INDEX IF NOT EXISTS frames_camera_received ON frames (camera_id, received_at)",
        ),
        Only("postgres", "DROP INDEX IF EXISTS labeling_queue_jpeg_sha256"),
        Only(
            "postgres",
            "CREATE UNIQUE INDEX IF NOT EXISTS labeling_queue_jpeg_sha256_unique "
            "ON labeling_queue (jpeg_sha256) WHERE jpeg_sha256 IS NOT NULL",
        ),
        Only(
            "postgres",
            """
            CREATE TABLE IF NOT EXISTS confidence_bins (
                camera_id VARCHAR NOT NULL,
                bin INTEGER NOT NULL,
                detections BIGINT NOT NULL,
                PRIMARY KEY (camera_id, bin)
            )
            """,
        ),
        Only(
            "postgres",
            """
            CREATE TABLE IF NOT EXISTS stack_identity (
                singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
                stack_id VARCHAR NOT NULL,
                created_at TIMESTAMPTZ NOT NULL
            )
            """,
        ),
    ],
    # PostgreSQL: per-minute rollups of frames and detections, kept at ingest, so the
    # console's windows over hours read them instead of every row (``edgeloop.store.rollups``;
    # 24 h at 1,000,000 detections took 2.5 s a panel). Filled from the rows stored so far.
    7: [
        Only(
            "postgres",
            """
            CREATE TABLE IF NOT EXISTS frame_minutes (
                minute TIMESTAMPTZ NOT NULL,
                camera_id VARCHAR NOT NULL,
                frames BIGINT NOT NULL,
                frames_with_detection BIGINT NOT NULL,
                detections BIGINT NOT NULL,
                PRIMARY KEY (minute, camera_id)
            )
            """,
        ),
        Only(
            "postgres",
            """
            CREATE TABLE IF NOT EXISTS detection_minutes (
                minute TIMESTAMPTZ NOT NULL,
                camera_id VARCHAR NOT NULL,
                class_name VARCHAR NOT NULL,
                bin INTEGER NOT NULL,
                detections BIGINT NOT NULL,
                uncertain BIGINT NOT NULL,
                confidence_sum DOUBLE NOT NULL,
                PRIMARY KEY (minute, camera_id, class_name, bin)
            )
            """,
        ),
        *(Only("postgres", sql) for sql in rollup_sql("frames", "prediction_logs")),
    ],
    # The accelerator each agent runs on, from its heartbeat (issue 17).
    8: [
        "ALTER TABLE agent_heartbeats ADD COLUMN IF NOT EXISTS execution_provider VARCHAR",
    ],
    # The numeric precision of the model each agent runs (fp32, int8), from its heartbeat.
    9: [
        "ALTER TABLE agent_heartbeats ADD COLUMN IF NOT EXISTS model_precision VARCHAR",
    ],
}

MIGRATIONS |= SITE_MIGRATIONS

SCHEMA_VERSION = max(MIGRATIONS)
"""The version a store is migrated to."""


def statements(version: int, dialect: str) -> list[str]:
    """The statements of migration ``version`` that run on ``dialect``."""
    return [
        s if isinstance(s, str) else s.sql
        for s in MIGRATIONS[version]
        if isinstance(s, str) or s.dialect == dialect
    ]


def migrate(con: Connection) -> int:
    """Bring the schema to ``SCHEMA_VERSION``; idempotent. Returns the version reached.

    Each version runs in one transaction. On PostgreSQL the caller holds an advisory lock
    (``PostgresStore.connect``), so processes starting together migrate once.
    """
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    # fetchall, not fetchone: DuckDB 2 keeps a partly fetched result open, and the next
    # con.sql() on this connection then fails with "unfinished result from execute()".
    rows = con.execute("SELECT max(version) FROM schema_version").fetchall()
    current = int(rows[0][0]) if rows and rows[0][0] is not None else 0
    for version in sorted(v for v in MIGRATIONS if v > current):
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in statements(version, getattr(con, "dialect", "duckdb")):
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?)", [version])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        logger.info("store schema migrated to version %s", version)
        current = version
    return current


def schema_version(*, con: Connection) -> int | None:
    """The schema version the file is at, or None before the first migration."""
    rows = con.execute("SELECT max(version) FROM schema_version").fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else None
