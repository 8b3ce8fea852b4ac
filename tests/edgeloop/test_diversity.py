"""The near-duplicate rule (``edgeloop.diversity``): pure, on hand-made unit vectors."""

from __future__ import annotations

import numpy as np
import pytest

from edgeloop.diversity import NearDuplicate, frame_vector, near_duplicates


def unit(*angles_deg: float) -> np.ndarray:
    """One 2-d unit vector per angle: cosine distance between a and b = 1 - cos(a - b)."""
    rad = np.radians(angles_deg)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


NONE = np.zeros((0, 2), dtype=np.float32)
# 1 - cos(5°) = 0.0038, 1 - cos(10°) = 0.0152, 1 - cos(20°) = 0.0603
T = 0.02


def test_of_a_run_of_near_identical_frames_the_first_in_priority_order_is_kept() -> None:
    marks = near_duplicates(unit(0, 5, 90, 8), ["c"] * 4, NONE, [], threshold=T)
    assert [(m.index, m.of_reference, m.of_index) for m in marks] == [(1, False, 0), (3, False, 0)]
    assert marks[0].distance == pytest.approx(1 - np.cos(np.radians(5)), abs=1e-6)


def test_a_frame_like_a_labeled_frame_is_marked_as_its_duplicate() -> None:
    marks = near_duplicates(unit(40, 93), ["c", "c"], unit(0, 90), ["c", "c"], threshold=T)
    assert marks == [NearDuplicate(1, True, 1, pytest.approx(1 - np.cos(np.radians(3)), abs=1e-6))]


def test_frames_of_other_cameras_never_suppress_each_other() -> None:
    marks = near_duplicates(unit(0, 0, 1), ["a", "b", "b"], unit(0), ["b"], threshold=T)
    assert [(m.index, m.of_reference) for m in marks] == [(1, True), (2, True)]  # "a" kept


def test_distance_is_to_kept_frames_only_so_a_chain_does_not_swallow_a_scene() -> None:
    # 0 kept; 10 is within 0.02 of it (marked); 20 is 0.015 from 10 but 0.06 from 0: kept.
    marks = near_duplicates(unit(0, 10, 20), ["c"] * 3, NONE, [], threshold=T)
    assert [m.index for m in marks] == [1]


def test_priority_order_decides_which_of_two_is_kept() -> None:
    assert [m.index for m in near_duplicates(unit(5, 0), ["c", "c"], NONE, [], threshold=T)] == [1]


def test_the_threshold_is_strict_and_zero_marks_nothing() -> None:
    pair = unit(0, 10)
    distance = float(1 - pair[0] @ pair[1])
    assert near_duplicates(pair, ["c", "c"], NONE, [], threshold=distance) == []
    assert len(near_duplicates(pair, ["c", "c"], NONE, [], threshold=distance + 1e-6)) == 1
    assert near_duplicates(unit(0, 0), ["c", "c"], NONE, [], threshold=0.0) == []


def test_no_candidates_mark_nothing() -> None:
    assert near_duplicates(NONE, [], unit(0), ["c"], threshold=T) == []


@pytest.mark.parametrize(
    ("candidates", "cameras", "references", "reference_cameras", "threshold", "message"),
    [
        (unit(0), ["c"], NONE, [], 2.5, "threshold"),
        (unit(0), ["c"], NONE, [], -0.1, "threshold"),
        (unit(0), ["c", "d"], NONE, [], T, "camera ids"),
        (unit(0), ["c"], unit(0), [], T, "camera ids"),
        (unit(0), ["c"], np.ones((1, 3), np.float32), ["c"], T, "references must be"),
    ],
)
def test_bad_input_is_refused(
    candidates, cameras, references, reference_cameras, threshold, message
) -> None:
    with pytest.raises(ValueError, match=message):
        near_duplicates(candidates, cameras, references, reference_cameras, threshold=threshold)


def test_a_frame_vector_is_the_normalised_mean_of_its_crops() -> None:
    vector = frame_vector(unit(0, 90))
    assert vector.dtype == np.float32
    np.testing.assert_allclose(vector, [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    with pytest.raises(ValueError, match="k >= 1"):
        frame_vector(NONE)
    with pytest.raises(ValueError, match="cancel out"):
        frame_vector(unit(0, 180))
