"""crop_embeddings on real vtest frames: embeds crops, publishes Qdrant versions, reuses vectors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import cv2
import dagster as dg
import pytest
from loopdata import T0, make_loop, vtest_frames

from assets.embeddings import CropEmbeddingsConfig, crop_embeddings
from assets.resources import EmbedderResource, VectorIndexResource
from edgeloop.embeddings import MobileNetV2Embedder, crop_bgr
from edgeloop.vectors import VectorIndex


def _run(loop, pad: float = 0.1):
    result = dg.materialize(
        [crop_embeddings],
        run_config=dg.RunConfig({"crop_embeddings": CropEmbeddingsConfig(pad=pad)}),
        resources={
            "store": loop.store_resource,
            "embedder": EmbedderResource(loop=loop.loop_resource, batch_size=16),
            "vectors": VectorIndexResource(loop=loop.loop_resource),
        },
    )
    assert result.success
    return result.asset_materializations_for_node("crop_embeddings")[0].metadata


def test_crop_embeddings_publishes_versions_and_finds_the_crop_itself(tmp_path):
    loop = make_loop(tmp_path)
    images = vtest_frames(10, step=7)
    loop.add_frames("cam-a", images[:4], boxes_per_frame=3)
    loop.add_frames("cam-b", images[4:6], boxes_per_frame=3, start=T0 + timedelta(minutes=1))

    md = _run(loop)
    assert (md["points"].value, md["dims"].value, md["version"].value) == (18, 1280, "v0001")
    assert md["embedder"].value == "mobilenetv2-imagenet-deepsort"
    assert (md["embedded_now"].value, md["reused_from_cache"].value) == (18, 0)
    assert md["published_now"].value is True
    assert md["cam-a/points"].value == 12 and md["cam-b/points"].value == 6

    # The API's view: embed one crop again, search the published index.
    det = next(d for d in loop.detections if d["camera_id"] == "cam-b")
    frame = next(f for f in loop.frames if f["frame_key"] == det["frame_key"])
    image = cv2.imread(frame["jpeg_path"])
    crop = crop_bgr(image, (det["x1"], det["y1"], det["x2"], det["y2"]))
    query = MobileNetV2Embedder().embed_images([crop])[0]
    index = VectorIndex.from_settings(loop.settings)
    hits = index.search_similar(query, 3)
    assert hits[0]["detection_id"] == det["detection_id"]
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert hits[0]["bbox"] == [det["x1"], det["y1"], det["x2"], det["y2"]]
    assert hits[0]["frame_key"] == det["frame_key"] and hits[0]["camera_id"] == "cam-b"

    # New frames (one of them with its JPEG gone): a new version, only new crops embedded.
    keys = loop.add_frames(
        "cam-a", images[6:10], boxes_per_frame=3, start=T0 + timedelta(minutes=2)
    )
    lost = next(f for f in loop.frames if f["frame_key"] == keys[-1])
    Path(lost["jpeg_path"]).unlink()
    md2 = _run(loop)
    assert (md2["version"].value, md2["points"].value) == ("v0002", 27)
    assert (md2["embedded_now"].value, md2["reused_from_cache"].value) == (9, 18)
    assert md2["missing_frames"].value == 1
    assert index.published().version == "v0002"
    assert index.search_similar(query, 1)[0]["detection_id"] == det["detection_id"]

    # Nothing new: the same crops (by content key) are already published, so no new version.
    md3 = _run(loop)
    assert (md3["version"].value, md3["published_now"].value) == ("v0002", False)
    assert (md3["embedded_now"].value, md3["reused_from_cache"].value) == (0, 27)
    assert index.versions() == ["v0001", "v0002"]

    # A different margin cuts different pixels: every crop is embedded again and published.
    md4 = _run(loop, pad=0.2)
    assert (md4["version"].value, md4["published_now"].value) == ("v0003", True)
    assert (md4["embedded_now"].value, md4["reused_from_cache"].value) == (27, 0)
    assert index.versions() == ["v0002", "v0003"]  # v0001 pruned, 2 kept


def test_crop_embeddings_fails_without_stored_jpegs(tmp_path):
    loop = make_loop(tmp_path)
    loop.add_frames("cam-a", count=3)  # detections, but no JPEGs
    with pytest.raises(dg.Failure, match="no detections with a stored frame JPEG"):
        crop_embeddings(
            dg.build_asset_context(),
            config=CropEmbeddingsConfig(),
            store=loop.store_resource,
            embedder=EmbedderResource(loop=loop.loop_resource),
            vectors=VectorIndexResource(loop=loop.loop_resource),
        )
