"""Migrations 10 and on: the site's own records beside the loop's (issue 18: its classes;
issue 19: drift alerts, tags, thumbnails). Kept apart from ``edgeloop.store.migrations``,
which holds the loop's tables (1–9) and the runner, to keep each module readable.
"""

from __future__ import annotations

from edgeloop.store.schema import Only

SITE_MIGRATIONS: dict[int, list[str | Only]] = {
    # The site's classes: added, renamed, merged, retired (issue 18;
    # ``edgeloop.store.classes``). ``site_classes`` holds one row per class (its stable id,
    # current name, status and the class a merge sent it into); ``class_aliases`` every name a
    # class has ever had, pointing at the class that answers to it now (what maps a stored
    # label's name to today's); ``class_changes`` is the append-only log of who changed
    # what and why.
    10: [
        "CREATE SEQUENCE IF NOT EXISTS site_classes_seq START 1",
        """
        CREATE TABLE IF NOT EXISTS site_classes (
            class_id BIGINT PRIMARY KEY DEFAULT nextval('site_classes_seq'),
            name VARCHAR NOT NULL UNIQUE,
            status VARCHAR NOT NULL DEFAULT 'active',
            merged_into BIGINT,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS class_aliases (
            name VARCHAR PRIMARY KEY,
            class_id BIGINT NOT NULL
        )
        """,
        "CREATE SEQUENCE IF NOT EXISTS class_changes_seq START 1",
        """
        CREATE TABLE IF NOT EXISTS class_changes (
            change_id BIGINT PRIMARY KEY DEFAULT nextval('class_changes_seq'),
            changed_at TIMESTAMPTZ NOT NULL,
            action VARCHAR NOT NULL,
            class_id BIGINT NOT NULL,
            name VARCHAR NOT NULL,
            previous_name VARCHAR,
            into_class_id BIGINT,
            actor VARCHAR NOT NULL,
            reason VARCHAR NOT NULL
        )
        """,
    ],
    # Drift alerts, raised once and acknowledged (issue 19; ``edgeloop.store.alerts``): one
    # row per alert, with its webhook delivery (status, attempts, last error). A camera and
    # kind has at most one live alert: open, or acknowledged while its condition holds.
    # Drift reports gain the model versions of their windows (``assets/drift.py``), so a
    # change can be told apart from a promotion.
    11: [
        "CREATE SEQUENCE IF NOT EXISTS drift_alerts_seq START 1",
        """
        CREATE TABLE IF NOT EXISTS drift_alerts (
            alert_id BIGINT PRIMARY KEY DEFAULT nextval('drift_alerts_seq'),
            camera_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            severity VARCHAR NOT NULL,
            status VARCHAR NOT NULL DEFAULT 'open',
            raised_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            summary VARCHAR NOT NULL,
            description VARCHAR NOT NULL,
            value DOUBLE,
            threshold DOUBLE,
            model_version VARCHAR,
            details JSON,
            cleared_at TIMESTAMPTZ,
            acknowledged_by VARCHAR,
            acknowledged_at TIMESTAMPTZ,
            delivery_status VARCHAR NOT NULL DEFAULT 'pending',
            delivery_attempts INTEGER NOT NULL DEFAULT 0,
            delivery_error VARCHAR,
            delivered_at TIMESTAMPTZ
        )
        """,
        "CREATE INDEX IF NOT EXISTS drift_alerts_camera_kind ON drift_alerts (camera_id, kind)",
        "ALTER TABLE drift_reports ADD COLUMN IF NOT EXISTS model_version VARCHAR",
        "ALTER TABLE drift_reports ADD COLUMN IF NOT EXISTS reference_model_version VARCHAR",
        "ALTER TABLE drift_reports ADD COLUMN IF NOT EXISTS model_versions JSON",
    ],
    # Tags on frames and detections, and thumbnails (issue 19).
    # ``tags`` (``edgeloop.store.tags``): one row per tag on a frame or a detection, set by a
    # person or suggested by the loop (``source``); ``frame_key`` is the frame's either way,
    # so a page of frames reads its tags with one lookup. ``thumbnails``
    # (``edgeloop.store.thumbnails``): which content-addressed object holds the thumbnail or
    # crop ``spec`` of a stored JPEG, so a view never re-reads the JPEG to name it.
    12: [
        """
        CREATE TABLE IF NOT EXISTS tags (
            target_kind VARCHAR NOT NULL,
            target_id VARCHAR NOT NULL,
            frame_key VARCHAR NOT NULL,
            tag VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            score DOUBLE,
            created_by VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (target_kind, target_id, tag)
        )
        """,
        "CREATE INDEX IF NOT EXISTS tags_tag ON tags (tag)",
        "CREATE INDEX IF NOT EXISTS tags_frame ON tags (frame_key)",
        """
        CREATE TABLE IF NOT EXISTS thumbnails (
            source_key VARCHAR NOT NULL,
            spec VARCHAR NOT NULL,
            sha256 VARCHAR NOT NULL,
            object_key VARCHAR NOT NULL,
            bytes INTEGER NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (source_key, spec)
        )
        """,
    ],
    # Prediction batches (issue 19; ``edgeloop.store.prediction_batches``): uploaded images
    # run through a registered model on the loop host. ``prediction_batches`` holds who
    # uploaded when; ``prediction_batch_images`` each image once (content-addressed object,
    # size, sanitised file name); ``prediction_batch_runs`` one row per model version run on
    # the batch; ``prediction_batch_detections`` each run's detections (bbox xyxy px).
    13: [
        "CREATE SEQUENCE IF NOT EXISTS prediction_batches_seq START 1",
        """
        CREATE TABLE IF NOT EXISTS prediction_batches (
            batch_id BIGINT PRIMARY KEY DEFAULT nextval('prediction_batches_seq'),
            created_at TIMESTAMPTZ NOT NULL,
            created_by VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            image_count INTEGER NOT NULL,
            status VARCHAR NOT NULL,
            queued_at TIMESTAMPTZ,
            queued_by VARCHAR
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS prediction_batch_images (
            batch_id BIGINT NOT NULL,
            image_index INTEGER NOT NULL,
            file_name VARCHAR NOT NULL,
            sha256 VARCHAR NOT NULL,
            object_key VARCHAR NOT NULL,
            bytes INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            PRIMARY KEY (batch_id, image_index)
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS prediction_batch_runs (
            batch_id BIGINT NOT NULL,
            model_version VARCHAR NOT NULL,
            model_name VARCHAR NOT NULL,
            alias VARCHAR,
            created_at TIMESTAMPTZ NOT NULL,
            created_by VARCHAR NOT NULL,
            detection_count INTEGER NOT NULL,
            inference_ms DOUBLE NOT NULL,
            PRIMARY KEY (batch_id, model_version)
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS prediction_batch_detections (
            batch_id BIGINT NOT NULL,
            model_version VARCHAR NOT NULL,
            image_index INTEGER NOT NULL,
            detection_index INTEGER NOT NULL,
            class_id INTEGER NOT NULL,
            class_name VARCHAR NOT NULL,
            confidence DOUBLE NOT NULL,
            x1 DOUBLE NOT NULL,
            y1 DOUBLE NOT NULL,
            x2 DOUBLE NOT NULL,
            y2 DOUBLE NOT NULL,
            PRIMARY KEY (batch_id, model_version, image_index, detection_index)
        )
        """,
    ],
    # Near-duplicates in the labeling queue (issue 18; ``edgeloop.store.diversity``):
    # ``near_duplicate_of`` names the labeled or kept item a pending item is too like (NULL
    # when none); ``diversity_weight`` multiplies its priority in every re-rank (1 when none).
    14: [
        "ALTER TABLE labeling_queue ADD COLUMN IF NOT EXISTS near_duplicate_of BIGINT",
        "ALTER TABLE labeling_queue ADD COLUMN IF NOT EXISTS diversity_weight DOUBLE DEFAULT 1.0",
    ],
    # The grid review's verdicts (issue 18; ``edgeloop.store.verdicts``): one row per crop
    # (a detection: ok / wrong / wrong_class) or audited frame with no detection (ok / missed)
    # a person reviewed, with who and when, the model's class and confidence, and whether it
    # was in the audit sample (``edgeloop.audit``) then: the confident-mistake rate's rows.
    15: [
        """
        CREATE TABLE IF NOT EXISTS review_verdicts (
            target_kind VARCHAR NOT NULL,
            target_id VARCHAR NOT NULL,
            frame_key VARCHAR NOT NULL,
            camera_id VARCHAR NOT NULL,
            class_name VARCHAR,
            confidence DOUBLE,
            verdict VARCHAR NOT NULL,
            corrected_class VARCHAR,
            audit BOOLEAN NOT NULL,
            reviewer VARCHAR NOT NULL,
            reviewed_at TIMESTAMPTZ NOT NULL,
            label_id BIGINT,
            PRIMARY KEY (target_kind, target_id)
        )
        """,
        "CREATE INDEX IF NOT EXISTS review_verdicts_reviewed_at ON review_verdicts (reviewed_at)",
        # The audit sample's frames by their hash (``edgeloop.audit.audit_sample_sql``): a
        # range scan of a 2 % sample instead of an md5 per row. DuckDB does not use an index
        # for a range.
        Only(
            "postgres",
            "CREATE INDEX IF NOT EXISTS frames_audit_hash ON frames (left(md5(frame_key), 8))",
        ),
    ],
    # Dataset versions in the store (issue 19; ``edgeloop.store.dataset_frames``): which
    # frames each DVC-versioned dataset version holds and in which split, recorded by the
    # ``training_dataset`` asset when it commits a version, so the browser filters on a
    # version with a join instead of reading manifests from the data repo.
    16: [
        """
        CREATE TABLE IF NOT EXISTS dataset_versions (
            dataset_version VARCHAR PRIMARY KEY,
            frames INTEGER NOT NULL,
            train_frames INTEGER NOT NULL,
            val_frames INTEGER NOT NULL,
            recorded_at TIMESTAMPTZ NOT NULL
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS dataset_frames (
            dataset_version VARCHAR NOT NULL,
            frame_key VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            PRIMARY KEY (dataset_version, frame_key)
        )
        """,
        "CREATE INDEX IF NOT EXISTS dataset_frames_frame ON dataset_frames (frame_key)",
    ],
    # A detection's index in its frame as an integer column (issue 19): the same number
    # as ``detection_id``'s ``:<index>`` suffix, which readers sorted by parsing the
    # string. A batch fetch reads detections by frame without their ids: on the DuckDB
    # file, fetching 100 frames' FSST-compressed ``detection_id`` strings row by row cost
    # ~17 of ~45 ms (bench/batch_fetch.py). Written by ingest from then on; filled here
    # for the rows before it.
    17: [
        "ALTER TABLE prediction_logs ADD COLUMN IF NOT EXISTS detection_index INTEGER",
        "UPDATE prediction_logs "
        "SET detection_index = CAST(split_part(detection_id, ':', -1) AS INTEGER) "
        "WHERE detection_index IS NULL",
    ],
}
