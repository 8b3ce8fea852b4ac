"""Prediction batches (``edgeloop.store.prediction_batches``) on both store backends: a
batch with its images and first run in one transaction, a second version's run on the
same images, the refusals, and the reads the API serves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgeloop.store import AnyStore
from edgeloop.store import prediction_batches as pb
from edgeloop.store.prediction_batches import BatchImage, Run, RunDetection, RunExistsError

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
IMAGES = [
    BatchImage("bus.jpg", "a" * 64, "uploads/aa/" + "a" * 64 + ".jpg", 1000, 810, 1080),
    BatchImage("cam 2.jpg", "b" * 64, "uploads/bb/" + "b" * 64 + ".jpg", 2000, 768, 576),
]
DETECTION_COLUMNS = (
    *("model_version", "image_index", "detection_index", "class_name", "confidence"),
    *("x1", "y1", "x2", "y2"),
)
RUN_1 = Run(
    model_name="edgeloop-detector",
    model_version="1",
    alias="production",
    inference_ms=12.5,
    detections=[
        RunDetection(0, 0, "Normal", 0.91, (10.0, 20.0, 110.0, 220.0)),
        RunDetection(0, 1, "Fall", 0.55, (300.0, 40.0, 400.0, 140.0)),
        RunDetection(1, 0, "Normal", 0.8, (1.5, 2.5, 30.25, 40.75)),
    ],
)
RUN_2 = Run(
    model_name="edgeloop-detector",
    model_version="2",
    alias=None,
    inference_ms=11.0,
    detections=[RunDetection(1, 0, "Normal", 0.7, (2.0, 3.0, 31.0, 41.0))],
)


def test_batch_images_runs_and_detections_read_back_exactly(store: AnyStore) -> None:
    with store.connect() as con:
        batch_id = pb.create(
            con=con, created_by="ana", source="files", images=IMAGES, run=RUN_1, now=T0
        )
        batch = pb.get(con=con, batch_id=batch_id)
        assert batch is not None
        assert (batch["created_by"], batch["source"], batch["image_count"], batch["status"]) == (
            "ana",
            "files",
            2,
            "predicted",
        )
        assert batch["created_at"] == T0 and batch["queued_at"] is None
        assert [
            (i["image_index"], i["file_name"], i["sha256"], i["bytes"], i["width"], i["height"])
            for i in pb.images(con=con, batch_id=batch_id)
        ] == [(0, "bus.jpg", "a" * 64, 1000, 810, 1080), (1, "cam 2.jpg", "b" * 64, 2000, 768, 576)]
        assert [
            tuple(d[c] for c in DETECTION_COLUMNS)
            for d in pb.detections(con=con, batch_id=batch_id)
        ] == [
            ("1", 0, 0, "Normal", 0.91, 10.0, 20.0, 110.0, 220.0),
            ("1", 0, 1, "Fall", 0.55, 300.0, 40.0, 400.0, 140.0),
            ("1", 1, 0, "Normal", 0.8, 1.5, 2.5, 30.25, 40.75),
        ]

        pb.add_run(
            con=con, batch_id=batch_id, run=RUN_2, created_by="bo", now=T0 + timedelta(minutes=1)
        )
        assert [
            (r["model_version"], r["alias"], r["created_by"], r["detection_count"])
            for r in pb.runs(con=con, batch_id=batch_id)
        ] == [("1", "production", "ana", 3), ("2", None, "bo", 1)]
        assert [
            (d["image_index"], d["class_id"], d["x1"])
            for d in pb.detections(con=con, batch_id=batch_id, model_version="2")
        ] == [(1, 0, 2.0)]
        # Images are stored once, however many runs.
        assert pb.counts(con=con) == {
            "prediction_batches": 1,
            "prediction_batch_images": 2,
            "prediction_batch_runs": 2,
            "prediction_batch_detections": 4,
        }
        assert pb.recent(con=con)[0]["model_versions"] == ["1", "2"]

        pb.mark_queued(con=con, batch_id=batch_id, queued_by="bo", now=T0 + timedelta(hours=1))
        pb.mark_queued(con=con, batch_id=batch_id, queued_by="cy", now=T0 + timedelta(hours=2))
        batch = pb.get(con=con, batch_id=batch_id)
        assert batch is not None
        assert (batch["status"], batch["queued_by"], batch["queued_at"]) == (
            "queued",
            "bo",
            T0 + timedelta(hours=1),
        )


def test_refusals_change_nothing(store: AnyStore) -> None:
    with store.connect() as con:
        batch_id = pb.create(
            con=con, created_by="ana", source="zip", images=IMAGES, run=RUN_1, now=T0
        )
        before = pb.counts(con=con)
        with pytest.raises(RunExistsError, match="version 1 already"):
            pb.add_run(con=con, batch_id=batch_id, run=RUN_1, created_by="bo", now=T0)
        with pytest.raises(LookupError, match="no prediction batch 999"):
            pb.add_run(con=con, batch_id=999, run=RUN_2, created_by="bo", now=T0)
        stray = Run("m", "3", None, 1.0, [RunDetection(5, 0, "Normal", 0.9, (0, 0, 1, 1))])
        with pytest.raises(ValueError, match="image the batch does not have"):
            pb.add_run(con=con, batch_id=batch_id, run=stray, created_by="bo", now=T0)
        with pytest.raises(ValueError, match="image the batch does not have"):
            pb.create(con=con, created_by="a", source="files", images=IMAGES, run=stray, now=T0)
        with pytest.raises(ValueError, match="at least one image"):
            pb.create(con=con, created_by="a", source="files", images=[], run=RUN_2, now=T0)
        assert pb.counts(con=con) == before
        assert pb.get(con=con, batch_id=999) is None
        assert pb.image(con=con, batch_id=batch_id, image_index=1)["file_name"] == "cam 2.jpg"
        assert pb.image(con=con, batch_id=batch_id, image_index=2) is None
