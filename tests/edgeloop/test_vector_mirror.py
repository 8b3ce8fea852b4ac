"""Crop-index versions through object storage (``edgeloop.vectors.mirror``): a version
published by one process (a Dagster run) is searched by another that shares no folder with
it (an API replica), and a newer version replaces it there. Real qdrant-edge shards, on
both object stores: the data folder and S3 (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import require_server, s3_server
from support import crop_points

from edgeloop.objects import ObjectStore, open_object_store
from edgeloop.vectors import VectorIndex
from edgeloop.vectors.mirror import POINTER_KEY, PREFIX

BUCKET = "edgeloop-vectors"


@pytest.fixture(params=["data folder", "s3"])
def shared(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ObjectStore]:
    if request.param == "data folder":
        yield open_object_store(None, data_dir=tmp_path / "shared")
        return
    require_server("s3")
    with s3_server(tmp_path / "moto") as s3:
        s3.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        for name, value in s3.environment().items():
            monkeypatch.setenv(name, value)
        yield open_object_store(f"s3://{BUCKET}/site", data_dir=tmp_path / "cache")


def test_a_version_published_on_one_host_is_searched_on_another(
    shared: ObjectStore, tmp_path: Path
) -> None:
    writer = VectorIndex(tmp_path / "run" / "qdrant", mirror=shared, keep_versions=1)
    reader = VectorIndex(tmp_path / "replica" / "qdrant", mirror=shared, mirror_check_s=0)
    assert reader.published() is None

    first = crop_points(30, seed=1)
    v1 = writer.publish(first, embedder="test")
    assert shared.exists(POINTER_KEY)
    hits = reader.search_similar(first[7].vector, 1)
    assert hits[0]["detection_id"] == "s1-d7"
    assert reader.published() is not None and reader.published().version == v1.version  # type: ignore[union-attr]
    assert (tmp_path / "replica" / "qdrant" / v1.version).is_dir()  # its own local copy

    second = crop_points(20, seed=2)
    v2 = writer.publish(second, embedder="test")
    assert v2.version != v1.version
    hits = reader.search_similar(second[3].vector, 1)
    assert hits[0]["detection_id"] == "s2-d3"
    # keep_versions=1: the object store keeps only the published version's files.
    versions = {key[len(PREFIX) :].split("/", 1)[0] for key in shared.keys(PREFIX)}
    assert versions == {v2.version, "PUBLISHED.json"}


def test_a_reader_catches_up_with_a_writer_that_starts_over_elsewhere(
    shared: ObjectStore, tmp_path: Path
) -> None:
    """A second publisher (a run on another machine) continues the numbering it finds in
    the object store instead of publishing a second v0001."""
    VectorIndex(tmp_path / "a" / "qdrant", mirror=shared).publish(crop_points(10, 3), embedder="t")
    later = VectorIndex(tmp_path / "b" / "qdrant", mirror=shared).publish(
        crop_points(10, 4), embedder="t"
    )
    assert later.version == "v0002"
