"""``/api/prediction-batches`` with the real seed detector (the ``seed_onnx`` fixture)
registered in a real MLflow store: uploads run the production model and store exactly what
the agents' detector finds; a second version's run, the comparison, sending to the
labeling queue, and the stored image served with its ETag. Hostile uploads are in
``test_api_prediction_batch_uploads.py``."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import pytest
from api_support import AGENT, LABELER, api_settings_for
from fastapi.testclient import TestClient
from support import SAMPLES_DIR, require
from upload_support import expected_detections, register_seed, stored, vtest_frame

from api.main import create_app
from edgeloop.settings import LoopSettings
from edgeloop.store import prediction_batches as pb
from edgeloop.store import queue
from edgeloop.uploads import decode_bgr


@dataclass(frozen=True)
class Registry:
    tracking_uri: str


@pytest.fixture(scope="module")
def seed_registry(tmp_path_factory: pytest.TempPathFactory, seed_onnx: Path) -> Registry:
    """The seed detector as version 1 (production) and 2 (staging) of a real MLflow store."""
    root = tmp_path_factory.mktemp("upload-registry")
    settings = LoopSettings(data_dir=root / "data")
    register_seed(settings, root, seed_onnx)
    return Registry(tracking_uri=settings.tracking_uri)


@pytest.fixture
def loop(loop_settings: LoopSettings, seed_registry: Registry) -> LoopSettings:
    return loop_settings.model_copy(update={"mlflow_tracking_uri": seed_registry.tracking_uri})


@pytest.fixture
def client(loop: LoopSettings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings_for(loop))) as test_client:
        yield test_client


@pytest.mark.backends
def test_upload_runs_production_and_stores_exactly_its_detections(
    client: TestClient, loop: LoopSettings, seed_onnx: Path
) -> None:
    bus = require(SAMPLES_DIR / "bus.jpg").read_bytes()
    ok, png = cv2.imencode(".png", vtest_frame(100))
    assert ok
    response = client.post(
        "/api/prediction-batches",
        headers=LABELER,
        files=[
            ("files", ("../holiday/bus.jpg", bus, "image/jpeg")),
            ("files", ("walkers.png", png.tobytes(), "image/png")),
        ],
    )
    assert response.status_code == 201, response.text
    body = response.json()
    batch_id = body["batch_id"]
    assert (body["created_by"], body["source"], body["image_count"], body["status"]) == (
        "labeler",
        "files",
        2,
        "predicted",
    )
    assert [(i["file_name"], i["width"], i["height"]) for i in body["images"]] == [
        ("bus.jpg", 810, 1080),
        ("walkers.png", 768, 576),
    ]
    assert [(r["model_version"], r["alias"]) for r in body["runs"]] == [("1", "production")]

    objects = loop.objects()
    with loop.store().connect() as con:
        images = pb.images(con=con, batch_id=batch_id)
        jpegs = [objects.get(i["object_key"]) for i in images]
        assert jpegs[0] == bus  # a JPEG is kept byte for byte; the PNG became a JPEG
        assert jpegs[1][:3] == b"\xff\xd8\xff"
        for image, jpeg in zip(images, jpegs, strict=True):
            rows = [
                d
                for d in pb.detections(con=con, batch_id=batch_id, model_version="1")
                if d["image_index"] == image["image_index"]
            ]
            assert stored(rows) == expected_detections(jpeg, seed_onnx)
        total = len(pb.detections(con=con, batch_id=batch_id))
    assert total == body["runs"][0]["detection_count"] > 0
    assert len(body["runs"][0]["detections"]) == total
    assert sorted(objects.keys("uploads/")) == sorted(i["object_key"] for i in images)

    image = client.get(body["images"][0]["url"], headers=LABELER)
    assert image.status_code == 200 and image.content == bus
    etag = image.headers["etag"]
    assert etag == f'"{images[0]["sha256"]}"'
    assert "immutable" in image.headers["cache-control"]
    again = client.get(body["images"][0]["url"], headers=LABELER | {"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    thumb = client.get(body["images"][1]["thumbnail_url"] + "?size=128", headers=LABELER)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    small = decode_bgr(thumb.content)
    assert small is not None and small.shape[:2] == (96, 128)

    listed = client.get("/api/prediction-batches", headers=AGENT).json()
    assert [(b["batch_id"], b["model_versions"]) for b in listed] == [(batch_id, ["1"])]


@pytest.mark.backends
def test_another_version_compare_and_queue(client: TestClient, loop: LoopSettings) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("photos/", b"")
        z.writestr("photos/zidane.jpg", require(SAMPLES_DIR / "zidane.jpg").read_bytes())
        z.writestr("__MACOSX/photos/._zidane.jpg", b"resource fork")
        jpeg = cv2.imencode(".jpg", vtest_frame(300))[1]
        z.writestr("cam/walkers.jpg", jpeg.tobytes())
    response = client.post(
        "/api/prediction-batches",
        headers=LABELER,
        files={"files": ("upload.zip", archive.getvalue(), "application/zip")},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    batch_id = body["batch_id"]
    assert body["source"] == "zip"
    assert [i["file_name"] for i in body["images"]] == ["zidane.jpg", "walkers.jpg"]
    keys_before = sorted(loop.objects().keys("uploads/"))

    run = client.post(
        f"/api/prediction-batches/{batch_id}/runs", headers=LABELER, json={"model_version": "2"}
    )
    assert run.status_code == 201, run.text
    assert [(r["model_version"], r["alias"]) for r in run.json()["runs"]] == [
        ("1", "production"),
        ("2", None),
    ]
    # Same ONNX file under both versions: the same boxes, every one matched with IoU 1.
    first, second = run.json()["runs"]
    assert [d | {"bbox_xyxy": None} for d in first["detections"]] == [
        d | {"bbox_xyxy": None} for d in second["detections"]
    ]
    assert sorted(loop.objects().keys("uploads/")) == keys_before  # images stored once
    repeat = client.post(
        f"/api/prediction-batches/{batch_id}/runs", headers=LABELER, json={"model_version": "2"}
    )
    assert repeat.status_code == 409 and "already" in repeat.json()["detail"]
    missing = client.post(
        f"/api/prediction-batches/{batch_id}/runs", headers=LABELER, json={"model_version": "9"}
    )
    assert missing.status_code == 404 and "no version 9" in missing.json()["detail"]

    compared = client.get(
        f"/api/prediction-batches/{batch_id}/compare?a=1&b=2", headers=LABELER
    ).json()
    counts = [sum(d["image_index"] == i for d in first["detections"]) for i in range(2)]
    assert [
        (c["file_name"], c["count_a"], c["count_b"], c["matched"]) for c in compared["images"]
    ] == [
        ("zidane.jpg", counts[0], counts[0], counts[0]),
        ("walkers.jpg", counts[1], counts[1], counts[1]),
    ]
    assert all(c["mean_iou"] == 1.0 for c in compared["images"] if c["matched"])
    assert (
        client.get(
            f"/api/prediction-batches/{batch_id}/compare?a=1&b=3", headers=LABELER
        ).status_code
        == 404
    )

    queued = client.post(f"/api/prediction-batches/{batch_id}/queue", headers=LABELER)
    assert queued.status_code == 200, queued.text
    answer = queued.json()
    keys = [f"upload-{batch_id}-0", f"upload-{batch_id}-1"]
    assert (answer["frame_keys"], answer["camera_id"], answer["model_version"]) == (
        keys,
        "upload",
        "1",
    )
    images = body["images"]
    with loop.store().connect() as con:
        frames = con.execute(
            "SELECT frame_key, camera_id, width, height, jpeg_path, detection_count "
            "FROM frames ORDER BY frame_key"
        ).fetchall()
        assert [tuple(f) for f in frames] == [
            (
                keys[i],
                "upload",
                images[i]["width"],
                images[i]["height"],
                pb.images(con=con, batch_id=batch_id)[i]["object_key"],
                counts[i],
            )
            for i in range(2)
        ]
        items = [queue.get_item(con=con, item_id=i) for i in answer["item_ids"]]
        assert [(i["frame_key"], i["status"]) for i in items] == [(k, "pending") for k in keys]
        assert pb.get(con=con, batch_id=batch_id)["status"] == "queued"
    item = client.get(f"/api/labeling-queue/{answer['item_ids'][0]}", headers=LABELER)
    assert item.status_code == 200, item.text
    assert len(item.json()["proposed_boxes"]) == counts[0]
    frame = client.get(f"/api/frames/{keys[0]}.jpg", headers=LABELER)
    assert frame.status_code == 200
    assert frame.content == require(SAMPLES_DIR / "zidane.jpg").read_bytes()
    # The dataset browser shows them as any frame: camera upload, queued.
    browsed = client.get("/api/browse/detections?camera_id=upload", headers=LABELER).json()
    assert browsed["count"] == sum(counts)
    assert {r["state"] for r in browsed["data"]} == {"queued"}
    again = client.post(f"/api/prediction-batches/{batch_id}/queue", headers=LABELER)
    assert again.json()["item_ids"] == answer["item_ids"]  # queued once


def test_a_failed_record_deletes_only_objects_no_batch_holds(
    client: TestClient, loop: LoopSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails to record an upload after its images were written: the objects it
    created go, except one that a batch recorded meanwhile (the same image uploaded at
    once) points at."""
    bus = require(SAMPLES_DIR / "bus.jpg").read_bytes()
    ok, frame = cv2.imencode(".jpg", vtest_frame(150))
    assert ok
    real_create = pb.create

    def concurrent_then_fail(*, images: list[pb.BatchImage], run: pb.Run, **rest: Any) -> int:
        # Another request records the bus image (the first) alone; this one then fails.
        first = [d for d in run.detections if d.image_index == 0]
        real_create(images=images[:1], run=replace(run, detections=first), **rest)
        raise RuntimeError("the store failed mid-record")

    monkeypatch.setattr(pb, "create", concurrent_then_fail)
    with pytest.raises(RuntimeError, match="mid-record"):
        client.post(
            "/api/prediction-batches",
            headers=LABELER,
            files=[
                ("files", ("bus.jpg", bus, "image/jpeg")),
                ("files", ("walkers.jpg", frame.tobytes(), "image/jpeg")),
            ],
        )
    with loop.store().connect() as con:
        (held,) = pb.recent(con=con)
        keys = [i["object_key"] for i in pb.images(con=con, batch_id=held["batch_id"])]
    assert len(keys) == 1
    assert sorted(loop.objects().keys("uploads/")) == keys
    assert loop.objects().get(keys[0]) == bus
