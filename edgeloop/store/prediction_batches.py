"""The prediction-batch tables: uploaded images run through registered model versions.

A **prediction batch** is a set of images someone uploaded (``created_by``, ``created_at``),
each stored once in the object store under its content hash (``prediction_batch_images``:
sha256, object key, size in px and bytes, the sanitised file name), and one **run** per
model version run on them (``prediction_batch_runs``: version, the alias it was resolved
from, when and by whom, detections and inference time), with each run's detections
(``prediction_batch_detections``: class, confidence, bbox xyxy in pixels of the stored
image). Running the batch with another version adds a run; the images are not stored
again. A batch's ``status`` is ``predicted``, then ``queued`` once its images were sent to
the labeling queue (``queued_at``, ``queued_by``).

Rows are written in one transaction per call (``create``, ``add_run``) and never changed,
except a batch's status. The routes are ``api.routes.prediction_batches``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from edgeloop.store.connection import Connection, fetch_dicts, fetch_scalar, transaction

PREDICTED = "predicted"
QUEUED = "queued"


class RunExistsError(ValueError):
    """The batch was already run with this model version (the API answers 409)."""


@dataclass(frozen=True)
class BatchImage:
    """One stored image of a batch.

    Attributes:
        file_name: the uploaded file's base name, sanitised (``edgeloop.uploads``).
        sha256: hex sha256 of the stored bytes (the object's name).
        object_key: where the object store holds the JPEG.
        size_bytes: the stored JPEG's size, bytes.
        width, height: the image's size, px.
    """

    file_name: str
    sha256: str
    object_key: str
    size_bytes: int
    width: int
    height: int


@dataclass(frozen=True)
class RunDetection:
    """One detection of a run: on image ``image_index``, bbox xyxy px of that image."""

    image_index: int
    class_id: int
    class_name: str
    confidence: float
    bbox_xyxy: tuple[float, float, float, float]


@dataclass(frozen=True)
class Run:
    """One model version run on a batch.

    Attributes:
        model_name, model_version: the registered model and version.
        alias: the alias it was resolved from (``production``), or None when the version
            was named.
        inference_ms: detector time over all the batch's images, ms.
        detections: every detection, in image then detection order.
    """

    model_name: str
    model_version: str
    alias: str | None
    inference_ms: float
    detections: Sequence[RunDetection]


def _insert_run(con: Connection, batch_id: int, run: Run, *, by: str, now: datetime) -> None:
    con.execute(
        """
        INSERT INTO prediction_batch_runs (batch_id, model_version, model_name, alias,
            created_at, created_by, detection_count, inference_ms)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            batch_id,
            run.model_version,
            run.model_name,
            run.alias,
            now,
            by,
            len(run.detections),
            run.inference_ms,
        ],
    )
    if not run.detections:
        return
    dets = run.detections
    per_image: dict[int, int] = {}
    order = []
    for d in dets:
        order.append(per_image.get(d.image_index, 0))
        per_image[d.image_index] = order[-1] + 1
    rows = pa.table(
        {
            "batch_id": pa.array([batch_id] * len(dets), pa.int64()),
            "model_version": pa.array([run.model_version] * len(dets), pa.string()),
            "image_index": pa.array([d.image_index for d in dets], pa.int32()),
            "detection_index": pa.array(order, pa.int32()),
            "class_id": pa.array([d.class_id for d in dets], pa.int32()),
            "class_name": pa.array([d.class_name for d in dets], pa.string()),
            "confidence": pa.array([d.confidence for d in dets], pa.float64()),
            **{
                name: pa.array([d.bbox_xyxy[i] for d in dets], pa.float64())
                for i, name in enumerate(("x1", "y1", "x2", "y2"))
            },
        }
    )
    _insert_arrow(con, "prediction_batch_detections", rows)


def _insert_arrow(con: Connection, table: str, rows: pa.Table) -> None:
    con.register("new_prediction_rows", rows)
    try:
        columns = ", ".join(rows.column_names)
        con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM new_prediction_rows")
    finally:
        con.unregister("new_prediction_rows")


def create(
    *,
    con: Connection,
    created_by: str,
    source: str,
    images: Sequence[BatchImage],
    run: Run,
    now: datetime,
) -> int:
    """Record a batch, its images (indexed 0.. in the given order) and its first run, in
    one transaction; returns the new ``batch_id``.

    Args:
        source: how the images came: ``files`` or ``zip``.

    Raises:
        ValueError: no image, or a detection on an image the batch does not have.
    """
    if not images:
        raise ValueError("a prediction batch needs at least one image")
    if any(not 0 <= d.image_index < len(images) for d in run.detections):
        raise ValueError("a detection names an image the batch does not have")
    with transaction(con):
        batch_id = int(
            fetch_scalar(
                con.execute(
                    """
                    INSERT INTO prediction_batches
                        (created_at, created_by, source, image_count, status)
                    VALUES (?, ?, ?, ?, ?)
                    RETURNING batch_id
                    """,
                    [now, created_by, source, len(images), PREDICTED],
                )
            )
        )
        rows = pa.table(
            {
                "batch_id": pa.array([batch_id] * len(images), pa.int64()),
                "image_index": pa.array(range(len(images)), pa.int32()),
                "file_name": pa.array([i.file_name for i in images], pa.string()),
                "sha256": pa.array([i.sha256 for i in images], pa.string()),
                "object_key": pa.array([i.object_key for i in images], pa.string()),
                "bytes": pa.array([i.size_bytes for i in images], pa.int32()),
                "width": pa.array([i.width for i in images], pa.int32()),
                "height": pa.array([i.height for i in images], pa.int32()),
            }
        )
        _insert_arrow(con, "prediction_batch_images", rows)
        _insert_run(con, batch_id, run, by=created_by, now=now)
    return batch_id


def add_run(*, con: Connection, batch_id: int, run: Run, created_by: str, now: datetime) -> None:
    """Record another model version's run on a stored batch, in one transaction.

    Raises:
        LookupError: no batch ``batch_id``.
        RunExistsError: the batch was run with ``run.model_version`` already.
    """
    with transaction(con):
        batch = get(con=con, batch_id=batch_id)
        if batch is None:
            raise LookupError(f"no prediction batch {batch_id}")
        if any(r["model_version"] == run.model_version for r in runs(con=con, batch_id=batch_id)):
            raise RunExistsError(
                f"prediction batch {batch_id} was run with model version "
                f"{run.model_version} already"
            )
        if any(not 0 <= d.image_index < batch["image_count"] for d in run.detections):
            raise ValueError("a detection names an image the batch does not have")
        _insert_run(con, batch_id, run, by=created_by, now=now)


def get(*, con: Connection, batch_id: int) -> dict[str, Any] | None:
    """The batch's row (``batch_id, created_at, created_by, source, image_count, status,
    queued_at, queued_by``), or None."""
    rows = fetch_dicts(
        con.execute(
            """
            SELECT batch_id, created_at, created_by, source, image_count, status,
                   queued_at, queued_by
            FROM prediction_batches WHERE batch_id = ?
            """,
            [batch_id],
        )
    )
    return rows[0] if rows else None


def recent(*, con: Connection, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Batches, newest first: each batch's row (as ``get``) with ``model_versions``, the
    versions run on it in the order they were run."""
    batches = fetch_dicts(
        con.execute(
            """
            SELECT batch_id, created_at, created_by, source, image_count, status,
                   queued_at, queued_by
            FROM prediction_batches ORDER BY batch_id DESC LIMIT ? OFFSET ?
            """,
            [limit, offset],
        )
    )
    if not batches:
        return []
    ids = [b["batch_id"] for b in batches]
    marks = ", ".join("?" * len(ids))
    versions: dict[int, list[str]] = {}
    for row in fetch_dicts(
        con.execute(
            f"""
            SELECT batch_id, model_version FROM prediction_batch_runs
            WHERE batch_id IN ({marks}) ORDER BY batch_id, created_at, model_version
            """,
            ids,
        )
    ):
        versions.setdefault(int(row["batch_id"]), []).append(str(row["model_version"]))
    return [b | {"model_versions": versions.get(int(b["batch_id"]), [])} for b in batches]


def images(*, con: Connection, batch_id: int) -> list[dict[str, Any]]:
    """The batch's images in index order: ``image_index, file_name, sha256, object_key,
    bytes, width, height``."""
    return fetch_dicts(
        con.execute(
            """
            SELECT image_index, file_name, sha256, object_key, bytes, width, height
            FROM prediction_batch_images WHERE batch_id = ? ORDER BY image_index
            """,
            [batch_id],
        )
    )


def image(*, con: Connection, batch_id: int, image_index: int) -> dict[str, Any] | None:
    """One image's row (as ``images``), or None."""
    found = [i for i in images(con=con, batch_id=batch_id) if i["image_index"] == image_index]
    return found[0] if found else None


def runs(*, con: Connection, batch_id: int) -> list[dict[str, Any]]:
    """The batch's runs in the order they were made: ``model_version, model_name, alias,
    created_at, created_by, detection_count, inference_ms``."""
    return fetch_dicts(
        con.execute(
            """
            SELECT model_version, model_name, alias, created_at, created_by,
                   detection_count, inference_ms
            FROM prediction_batch_runs WHERE batch_id = ? ORDER BY created_at, model_version
            """,
            [batch_id],
        )
    )


def detections(
    *, con: Connection, batch_id: int, model_version: str | None = None
) -> list[dict[str, Any]]:
    """The batch's detections (of one run when ``model_version`` is given), ordered by
    version, image and detection index: ``model_version, image_index, detection_index,
    class_id, class_name, confidence, x1, y1, x2, y2`` (bbox xyxy px of the image)."""
    where = "batch_id = ?"
    params: list[Any] = [batch_id]
    if model_version is not None:
        where += " AND model_version = ?"
        params.append(model_version)
    return fetch_dicts(
        con.execute(
            f"""
            SELECT model_version, image_index, detection_index, class_id, class_name,
                   confidence, x1, y1, x2, y2
            FROM prediction_batch_detections WHERE {where}
            ORDER BY model_version, image_index, detection_index
            """,
            params,
        )
    )


def referenced_objects(*, con: Connection, object_keys: Sequence[str]) -> set[str]:
    """Which of ``object_keys`` a stored batch image points at (an upload that failed to
    be recorded deletes only the objects it created that no other batch holds)."""
    if not object_keys:
        return set()
    marks = ", ".join("?" * len(object_keys))
    rows = con.execute(
        f"SELECT DISTINCT object_key FROM prediction_batch_images WHERE object_key IN ({marks})",
        list(object_keys),
    ).fetchall()
    return {str(r[0]) for r in rows}


def mark_queued(*, con: Connection, batch_id: int, queued_by: str, now: datetime) -> None:
    """Note that the batch's images were sent to the labeling queue (status ``queued``);
    the first sending's time and sender are kept."""
    con.execute(
        """
        UPDATE prediction_batches SET status = ?, queued_at = coalesce(queued_at, ?),
            queued_by = coalesce(queued_by, ?)
        WHERE batch_id = ?
        """,
        [QUEUED, now, queued_by, batch_id],
    )


def counts(*, con: Connection) -> dict[str, int]:
    """Rows in each prediction-batch table, by table name."""
    tables = (
        "prediction_batches",
        "prediction_batch_images",
        "prediction_batch_runs",
        "prediction_batch_detections",
    )
    return {t: int(fetch_scalar(con.execute(f"SELECT count(*) FROM {t}"))) for t in tables}
