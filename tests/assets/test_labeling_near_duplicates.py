"""The labeling_queue asset ranks near-duplicates down, on both store backends: marked
items come after every other pending item and are still handed out once nothing else is
left (``edgeloop.diversity``, ``edgeloop.store.diversity``)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import numpy as np
import pytest
from loopdata import T0, make_loop

from assets.embeddings import CROP_PAD
from assets.labeling import labeling_queue, near_duplicate_items
from edgeloop.embeddings import EmbeddingCache, crop_key, embedder_name, embedder_slug
from edgeloop.rules import uncertainty_score
from edgeloop.store import diversity, queue

BLANK = np.zeros((8, 8, 3), dtype=np.uint8)


def _unit(angle_deg: float) -> np.ndarray:
    rad = np.radians(angle_deg)
    return np.array([np.cos(rad), np.sin(rad)], dtype=np.float32)


def _write_crop_vectors(loop, angles: dict[str, float]) -> None:
    """The crop_embeddings asset's vector cache, with one 2-d vector per frame's one crop."""
    by_frame = {f["frame_key"]: f for f in loop.frames}
    vectors = {}
    for det in loop.detections:
        if det["frame_key"] in angles:
            box = (det["x1"], det["y1"], det["x2"], det["y2"])
            key = crop_key(by_frame[det["frame_key"]]["jpeg_path"], box, pad=CROP_PAD)
            vectors[key] = _unit(angles[det["frame_key"]])
    slug = embedder_slug(embedder_name(loop.settings))
    EmbeddingCache(loop.settings.data_dir / "embeddings" / f"{slug}.npz").save(vectors)


def _pending(loop) -> list[tuple[str, float]]:
    with loop.store.connect() as con:
        items, _ = queue.list_items(con=con, status="pending", camera_id=None, limit=50, offset=0)
    return [(i["frame_key"], round(float(i["priority"]), 4)) for i in items]


def _marks(loop) -> dict[str, tuple[str | None, float]]:
    """frame_key -> (frame_key of the item it is like, diversity_weight), every item."""
    with loop.store.connect() as con:
        rows = con.execute(
            """
            SELECT q.frame_key, o.frame_key, q.diversity_weight
            FROM labeling_queue q LEFT JOIN labeling_queue o ON o.item_id = q.near_duplicate_of
            """
        ).fetchall()
    return {key: (of, float(weight)) for key, of, weight in rows}


ON = {"ops": {"labeling_queue": {"config": {"near_duplicates": True}}}}
"""The pass is off by default (``assets.labeling.NEAR_DUPLICATES``)."""


def test_near_duplicates_go_last_and_are_still_handed_out(tmp_path, database_url) -> None:
    loop = make_loop(tmp_path, database_url=database_url)
    # One box per frame; confidences 0.50, 0.55, 0.60, 0.65, 0.50, 0.55, 0.60 (loopdata).
    a = loop.add_frames("cam-a", [BLANK] * 7, boxes_per_frame=1)
    b = loop.add_frames("cam-b", [BLANK], boxes_per_frame=1, start=T0 + timedelta(hours=1))
    loop.queue(a + b)
    loop.label(a[5], [], at=T0 + timedelta(minutes=30))
    # a0 = a1 (a1 ranks higher), a3 = a2 (a2 ranks higher), a6 = a5 (labeled);
    # a4 has no crop vector; b0 = a1 but on another camera.
    _write_crop_vectors(loop, {a[0]: 0, a[1]: 0, a[2]: 90, a[3]: 90, a[5]: 45, a[6]: 45, b[0]: 0})

    result = dg.materialize(
        [labeling_queue], resources={"store": loop.store_resource}, run_config=ON
    )

    md = result.asset_materializations_for_node("labeling_queue")[0].metadata
    assert md["near_duplicates"].value == 3
    assert md["cam-a/near_duplicates"].value == 3
    assert "cam-b/near_duplicates" not in md
    assert (md["near_duplicate_compared"].value, md["near_duplicate_references"].value) == (6, 1)
    assert md["pending_without_crop_vectors"].value == 1
    score = {
        k: round(uncertainty_score(c), 4)
        for k, c in zip(a, [0.5, 0.55, 0.6, 0.65, 0.5, 0.55, 0.6], strict=True)
    }
    score[b[0]] = round(uncertainty_score(0.5), 4)
    kept = [a[1], a[2], a[4], b[0]]
    pending = _pending(loop)
    # Kept items first, by priority; then the near-duplicates, ranked down to 0.
    assert {k for k, _ in pending[:4]} == set(kept)
    assert {k for k, _ in pending[4:]} == {a[0], a[3], a[6]}
    assert dict(pending) == {**{k: score[k] for k in kept}, a[0]: 0.0, a[3]: 0.0, a[6]: 0.0}
    assert _marks(loop) == {
        a[0]: (a[1], 0.0),
        a[3]: (a[2], 0.0),
        a[6]: (a[5], 0.0),
        **{k: (None, 1.0) for k in kept},
        a[5]: (None, 1.0),
    }
    # The drift sensor's boost keeps the marks (the weight is part of every re-rank).
    with loop.store.connect() as con:
        queue.boost_camera(con=con, camera_id="cam-a", factor=2.0, low=0.4, high=0.7)
    boosted = dict(_pending(loop))
    assert [boosted[k] for k in (a[0], a[3], a[6])] == [0.0, 0.0, 0.0]
    assert boosted[a[1]] == round(2 * score[a[1]], 4)

    # Each kept item comes first; then, with nothing else pending, the near-duplicates.
    handed = []
    for n in range(6):
        with loop.store.connect() as con:
            item = queue.next_item(con=con, camera_id=None)
        assert item is not None
        handed.append(item["frame_key"])
        loop.label(item["frame_key"], [], at=T0 + timedelta(hours=2, minutes=n))
    assert set(handed[:4]) == set(kept)
    assert set(handed[4:]) < {a[0], a[3], a[6]}


def test_a_new_pass_clears_marks_the_vectors_no_longer_support(tmp_path, database_url) -> None:
    loop = make_loop(tmp_path, database_url=database_url)
    a = loop.add_frames("cam-a", [BLANK] * 2, boxes_per_frame=1)  # a1 ranks higher
    loop.queue(a)
    _write_crop_vectors(loop, {a[0]: 0, a[1]: 0})
    dg.materialize([labeling_queue], resources={"store": loop.store_resource}, run_config=ON)
    assert _marks(loop) == {a[0]: (a[1], 0.0), a[1]: (None, 1.0)}

    _write_crop_vectors(loop, {a[0]: 0, a[1]: 90})  # re-embedded: now different scenes
    result = dg.materialize(
        [labeling_queue], resources={"store": loop.store_resource}, run_config=ON
    )
    md = result.asset_materializations_for_node("labeling_queue")[0].metadata
    assert (md["near_duplicates"].value, md["near_duplicate_marks_cleared"].value) == (0, 1)
    assert _marks(loop) == {a[0]: (None, 1.0), a[1]: (None, 1.0)}
    assert all(priority > 0 for _, priority in _pending(loop))


def test_turned_off_the_pass_clears_every_mark(tmp_path, database_url) -> None:
    loop = make_loop(tmp_path, database_url=database_url)
    a = loop.add_frames("cam-a", [BLANK] * 2, boxes_per_frame=1)  # a1 ranks higher
    loop.queue(a)
    _write_crop_vectors(loop, {a[0]: 0, a[1]: 0})
    dg.materialize([labeling_queue], resources={"store": loop.store_resource}, run_config=ON)
    assert _marks(loop)[a[0]] == (a[1], 0.0)

    result = dg.materialize(
        [labeling_queue],
        resources={"store": loop.store_resource},
        run_config={"ops": {"labeling_queue": {"config": {"near_duplicates": False}}}},
    )
    md = result.asset_materializations_for_node("labeling_queue")[0].metadata
    assert (md["near_duplicates"].value, md["near_duplicate_marks_cleared"].value) == (0, 1)
    assert _marks(loop) == {a[0]: (None, 1.0), a[1]: (None, 1.0)}
    assert all(priority > 0 for _, priority in _pending(loop))


def test_items_beyond_the_window_are_left_unmarked() -> None:
    box = (0.0, 0.0, 10.0, 10.0)
    # (item_id, camera, status, detection_id, jpeg_path, bbox): three identical pending frames
    rows = [(i, "cam-a", "pending", f"d{i}", f"f{i}.jpg", box) for i in (7, 8, 9)]
    vectors = {crop_key(f"f{i}.jpg", box, pad=CROP_PAD): _unit(0) for i in (7, 8, 9)}
    marked, stats = near_duplicate_items(rows, vectors, pad=CROP_PAD, threshold=0.02, window=2)
    assert [(m[0], m[2]) for m in marked] == [(8, 7)]
    assert (stats["compared"], stats["beyond_window"]) == (2, 1)
    marked, _ = near_duplicate_items(rows, vectors, pad=CROP_PAD, threshold=0.02, window=3)
    assert [(m[0], m[2]) for m in marked] == [(8, 7), (9, 7)]


@pytest.mark.parametrize("factor", [1.0, 1.5, -0.1])
def test_a_factor_outside_zero_to_one_is_refused_and_changes_nothing(
    tmp_path, database_url, factor: float
) -> None:
    loop = make_loop(tmp_path, database_url=database_url)
    a = loop.add_frames("cam-a", [BLANK] * 2, boxes_per_frame=1)
    loop.queue(a, priority=0.5)
    with loop.store.connect() as con:
        [first, _] = [queue.item_for_frame(con=con, frame_key=k)["item_id"] for k in a]
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            diversity.mark_near_duplicates(con=con, marks=[(first, first + 1)], factor=factor)
    assert _marks(loop) == {a[0]: (None, 1.0), a[1]: (None, 1.0)}
    assert dict(_pending(loop)) == {a[0]: 0.5, a[1]: 0.5}
