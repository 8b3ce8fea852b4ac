"""The embedded engine under edgeloop.vectors (qdrant-edge shards): exact answers against
numpy, HNSW recall, payloads, durability across processes, locks and bad pointers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeloop.vectors import CropPoint, ShardReader, VectorIndex
from edgeloop.vectors.versions import (
    POINTER_FILE,
    CorruptIndexError,
    IndexLockedError,
    is_held_open,
    read_pointer,
)

CAMERAS = ("cam-a", "cam-b", "cam-c")


def _clustered(n: int, dims: int, seed: int) -> tuple[list[CropPoint], np.ndarray]:
    """``n`` points in 20 clusters (L2-normalised float32), cameras round-robin."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, dims)).astype(np.float32)
    vectors = centers[rng.integers(0, 20, n)] + 0.6 * rng.normal(size=(n, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    points = [
        CropPoint(
            detection_id=f"d{i}",
            frame_key=f"{CAMERAS[i % 3]}:f{i // 4}",
            camera_id=CAMERAS[i % 3],
            class_name="Fall" if i % 5 == 0 else "Normal",
            confidence=round(0.4 + (i % 30) / 100, 2),
            bbox_xyxy=(float(i), 2.0, float(i) + 30.5, 40.25),
            captured_at_iso=f"2025-06-01T12:{i % 60:02d}:00.000000Z",
            vector=vectors[i],
        )
        for i in range(n)
    ]
    return points, vectors


def _exact_top(vectors: np.ndarray, query: np.ndarray, mask: np.ndarray, k: int) -> list[int]:
    candidates = np.flatnonzero(mask)
    scores = vectors[candidates] @ query
    return [int(candidates[j]) for j in np.argsort(-scores, kind="stable")[:k]]


def test_filtered_search_matches_exact_numpy_search(tmp_path: Path) -> None:
    points, vectors = _clustered(600, 48, seed=1)
    index = VectorIndex(tmp_path / "qdrant")
    info = index.publish(points, embedder="e")
    assert (info.points, info.dims, info.engine) == (600, 48, "qdrant-edge")
    cameras = np.array([p.camera_id for p in points])
    for qi in (3, 77, 431):
        query = vectors[qi]
        hits = index.search_similar(query, 10, camera_id="cam-b")
        expected = _exact_top(vectors, query, cameras == "cam-b", 10)
        assert [h["detection_id"] for h in hits] == [f"d{i}" for i in expected]
        np.testing.assert_allclose([h["score"] for h in hits], vectors[expected] @ query, atol=1e-5)
        assert {h["camera_id"] for h in hits} == {"cam-b"}


def test_payload_round_trips(tmp_path: Path) -> None:
    points, _ = _clustered(30, 16, seed=2)
    index = VectorIndex(tmp_path / "qdrant")
    index.publish(points, embedder="e")
    hit = index.search_similar(points[17].vector, 1)[0]
    assert {k: v for k, v in hit.items() if k != "score"} == points[17].payload()
    assert hit["bbox"] == [17.0, 2.0, 47.5, 40.25]
    np.testing.assert_array_equal(index.vector_of("d17"), points[17].vector)
    assert index.vector_of("not-indexed") is None
    found = index.vectors_of(["d17", "d3", "not-indexed", "d17"])
    assert set(found) == {"d17", "d3"}
    np.testing.assert_array_equal(found["d3"], points[3].vector)
    assert found["d17"].dtype == np.float32 and index.vectors_of([]) == {}


def test_large_versions_get_an_hnsw_graph_with_high_recall(tmp_path: Path) -> None:
    points, vectors = _clustered(3000, 64, seed=3)
    index = VectorIndex(tmp_path / "qdrant", hnsw_min_points=1000)
    info = index.publish(points, embedder="e")
    reader = ShardReader(info)
    try:
        shard_info = reader._open_shard().info()
        assert shard_info.indexed_vectors_count == 3000  # the graph covers every point
        assert set(shard_info.payload_schema) == {"camera_id", "class_name"}
        cameras = np.array([p.camera_id for p in points])
        recalls = []
        for qi in range(0, 3000, 97):
            got = {h["detection_id"] for h in reader.search(vectors[qi], 10, camera_id="cam-c")}
            want = {f"d{i}" for i in _exact_top(vectors, vectors[qi], cameras == "cam-c", 10)}
            recalls.append(len(got & want) / 10)
        assert np.mean(recalls) >= 0.95
    finally:
        reader.close()


def test_published_points_survive_in_a_new_process(tmp_path: Path) -> None:
    points, _ = _clustered(50, 8, seed=4)
    root = tmp_path / "qdrant"
    VectorIndex(root).publish(points, embedder="e")
    script = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from edgeloop.vectors import VectorIndex
        index = VectorIndex(Path({str(root)!r}))
        hit = index.search_similar({points[9].vector.tolist()!r}, 1)[0]
        print(json.dumps({{"points": index.published().points, "top": hit["detection_id"]}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"points": 50, "top": "d9"}


def test_an_open_version_is_locked_for_other_openers(tmp_path: Path) -> None:
    points, _ = _clustered(10, 8, seed=5)
    index = VectorIndex(tmp_path / "qdrant", lock_timeout_s=0.3)
    info = index.publish(points, embedder="e")
    folder = Path(info.location)
    assert not is_held_open(folder)
    reader = ShardReader(info)
    try:
        assert is_held_open(folder)
        with pytest.raises(IndexLockedError, match="one process at a time"):
            index.search_similar(points[0].vector, 1)
    finally:
        reader.close()
    assert not is_held_open(folder)
    assert index.search_similar(points[0].vector, 1)[0]["detection_id"] == "d0"


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"version": "v0001", "collection": "crops"}),  # written by an older edgeloop
        json.dumps({"engine": "qdrant-edge", "version": "v0001"}),  # fields missing
    ],
)
def test_a_corrupt_pointer_is_a_clear_error_and_a_publish_replaces_it(
    tmp_path: Path, content: str
) -> None:
    root = tmp_path / "qdrant"
    root.mkdir()
    (root / POINTER_FILE).write_text(content)
    index = VectorIndex(root)
    with pytest.raises(CorruptIndexError, match="crop_embeddings"):
        index.search_similar(np.ones(8), 1)
    points, _ = _clustered(5, 8, seed=6)
    assert index.publish(points, embedder="e").version == "v0001"
    assert read_pointer(root) is not None


def test_a_pointer_to_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    index = VectorIndex(tmp_path / "qdrant")
    info = index.publish(_clustered(5, 8, seed=7)[0], embedder="e")
    import shutil

    shutil.rmtree(info.location)
    with pytest.raises(CorruptIndexError, match="no qdrant-edge shard"):
        index.vector_of("d1")
