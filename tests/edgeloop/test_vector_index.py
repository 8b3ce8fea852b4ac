"""edgeloop.vectors: versioned publishing in real Qdrant local folders (and the alias path)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qdrant_client import QdrantClient
from support import crop_points

from edgeloop.vectors import IndexNotPublishedError, VectorIndex


def test_publish_flips_the_pointer_and_prunes_old_versions(tmp_path):
    index = VectorIndex(tmp_path / "qdrant")
    assert index.published() is None
    with pytest.raises(IndexNotPublishedError, match="crop_embeddings"):
        index.search_similar(np.ones(64), 3)

    first = crop_points(40, seed=1)
    v1 = index.publish(first, embedder="test-embedder")
    assert (v1.version, v1.points, v1.dims, v1.embedder) == ("v0001", 40, 64, "test-embedder")
    hits = index.search_similar(first[7].vector, 3)
    assert hits[0]["detection_id"] == first[7].detection_id
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert hits[0]["bbox"] == [1.0, 2.0, 30.0, 40.0] and hits[0]["camera_id"] == "cam-a"
    only_b = index.search_similar(first[7].vector, 5, camera_id="cam-b")
    assert only_b and {h["camera_id"] for h in only_b} == {"cam-b"}
    np.testing.assert_allclose(index.vector_of(first[7].detection_id), first[7].vector, atol=1e-6)
    with pytest.raises(ValueError, match="dims"):
        index.search_similar(np.ones(10), 3)

    second = crop_points(20, seed=2)
    v2 = index.publish(second, embedder="test-embedder")
    assert v2.version == "v0002"
    assert json.loads((tmp_path / "qdrant" / "PUBLISHED.json").read_text())["version"] == "v0002"
    assert index.search_similar(second[3].vector, 1)[0]["detection_id"] == second[3].detection_id
    assert index.vector_of(first[7].detection_id) is None  # readers see only the published version

    index.publish(crop_points(5, seed=3), embedder="test-embedder")
    assert index.versions() == ["v0002", "v0003"]  # keep 2: v0001 pruned
    assert not (tmp_path / "qdrant" / "v0001").exists()


def test_a_folder_held_open_by_a_reader_is_not_pruned(tmp_path):
    index = VectorIndex(tmp_path / "qdrant", keep_versions=1)
    index.publish(crop_points(5, seed=1), embedder="e")
    reader = VectorIndex(tmp_path / "qdrant", keep_open=True)
    assert reader.search_similar(crop_points(5, seed=1)[0].vector, 1)  # holds v0001 open
    index.publish(crop_points(5, seed=2), embedder="e")
    assert (tmp_path / "qdrant" / "v0001").exists()  # still open in the reader
    hits = reader.search_similar(
        crop_points(5, seed=2)[0].vector, 1
    )  # follows the pointer to v0002
    assert hits[0]["detection_id"] == "s2-d0"
    index.publish(crop_points(5, seed=3), embedder="e")
    assert index.versions() == ["v0002", "v0003"]  # v0001 released; the reader holds v0002
    reader.close()
    index.publish(crop_points(5, seed=4), embedder="e")
    assert index.versions() == ["v0004"]


def test_refuses_empty_or_mixed_lengthcrop_points(tmp_path):
    index = VectorIndex(tmp_path / "qdrant")
    with pytest.raises(ValueError, match="empty"):
        index.publish([], embedder="e")
    mixed = crop_points(2, seed=1, dims=8) + crop_points(2, seed=2, dims=16)
    with pytest.raises(ValueError, match="one length"):
        index.publish(mixed, embedder="e")


def test_server_mode_moves_an_alias(tmp_path):
    # Server mode's code path (collections crops_vNNNN + alias crops) against a local client.
    def client() -> QdrantClient:
        return QdrantClient(path=str(tmp_path / "server"))

    index = VectorIndex(tmp_path / "unused", client_factory=client)
    first, second = crop_points(10, seed=1), crop_points(10, seed=2)
    assert index.publish(first, embedder="e").collection == "crops_v0001"
    published = index.publish(second, embedder="e")
    assert (published.version, published.collection, published.dims) == ("v0002", "crops_v0002", 64)
    assert index.published() == published
    assert index.search_similar(second[4].vector, 1)[0]["detection_id"] == second[4].detection_id
    # Many vectors in one request: those of the published version only.
    asked = [second[4].detection_id, second[7].detection_id, "not-indexed"]
    found = index.vectors_of([*asked, second[4].detection_id])
    assert set(found) == set(asked[:2])
    np.testing.assert_allclose(found[asked[1]], second[7].vector, atol=1e-6)
    assert index.vectors_of([]) == {}
    index.publish(crop_points(3, seed=3), embedder="e")
    assert index.versions() == ["v0002", "v0003"]
