"""``assets.heldout`` on constructed per-image matches with answers worked out by hand:
the paired bootstrap interval, per-class and per-camera AP, and the aggregate scores.

A single prediction that is a true positive at every IoU threshold on an image with one
ground-truth box gives AP 0.995 (ultralytics' 101-point interpolation, COCO's, drops to 0
at recall 1 between the last two points); no prediction gives AP 0; one true positive of
two boxes (precision 1 up to recall 0.5) gives AP ~0.5.
"""

from __future__ import annotations

import numpy as np
import pytest

from assets.heldout import class_ap, group_ap, heldout_scores, paired_bootstrap
from assets.yolo import ImageMatches
from edgeloop.offline import configure_offline_environment


@pytest.fixture(autouse=True, scope="module")
def offline_ultralytics(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``ap_per_class`` imports ultralytics: keep it offline and out of the home folder."""
    configure_offline_environment(tmp_path_factory.mktemp("ultralytics"))


def image(name: str, hits: list[int], targets: list[int], conf: list[float] | None = None):
    """An image whose predictions are true positives at the first ``hits[i]`` of the 10
    IoU thresholds (0: a false positive; 10: right at IoU 0.95), all of class 0 unless the
    target classes say otherwise."""
    tp = np.zeros((len(hits), 10), dtype=bool)
    for row, h in enumerate(hits):
        tp[row, :h] = True
    return ImageMatches(
        name=name,
        tp=tp,
        conf=np.asarray(conf if conf is not None else [0.9 - 0.1 * i for i in range(len(hits))]),
        pred_cls=np.zeros(len(hits), dtype=int),
        target_cls=np.asarray(targets, dtype=int),
    )


def test_identical_models_give_a_zero_width_interval_at_zero():
    images = [image(f"{i}.jpg", [10, 4, 0], [0, 0]) for i in range(15)]

    gains = paired_bootstrap(images, images, resamples=200)

    for metric in ("mAP50-95", "mAP50"):
        gain = gains[metric]
        assert (gain.point, gain.low, gain.high) == (0.0, 0.0, 0.0)
        assert (gain.n, gain.resamples, gain.confidence) == (15, 200, 0.95)


def test_a_candidate_better_on_every_image_has_an_interval_above_zero():
    # candidate: every box found tightly; production: a loose box (right up to IoU 0.70)
    # or a miss on every image, so every resample favours the candidate.
    candidate = [image(f"{i}.jpg", [10], [0]) for i in range(20)]
    production = [image(f"{i}.jpg", [5] if i % 2 else [0], [0]) for i in range(20)]

    gains = paired_bootstrap(candidate, production, resamples=300, seed=3)

    primary = gains["mAP50-95"]
    assert primary.low > 0 and primary.high > primary.low
    assert primary.low <= primary.point <= primary.high
    assert primary.label().startswith(f"Δ mAP50-95 +{primary.point:.3f} [+")
    assert primary.label().endswith("(95%, n=20 images)")


def test_the_interval_matches_the_hand_computed_resampling_distribution():
    # Two images. a: both models find its box. b: only the candidate finds its box.
    # Resamples of 2 images: {a,a} (p=1/4): Δ=0; {b,b} (1/4): Δ=0.995-0;
    # {a,b} (1/2): Δ=0.995-0.5.
    candidate = [image("a.jpg", [10], [0]), image("b.jpg", [10], [0])]
    production = [image("a.jpg", [10], [0]), image("b.jpg", [], [0])]

    wide = paired_bootstrap(candidate, production, resamples=2000)["mAP50-95"]
    narrow = paired_bootstrap(candidate, production, resamples=2000, confidence=0.4)

    assert wide.point == pytest.approx(0.5, abs=0.01)
    # 25% of the mass at each end, more than the 2.5% tails: the ends are the bounds.
    assert (wide.low, wide.high) == (0.0, pytest.approx(0.995))
    # The 30th and 70th percentiles fall in the middle half: both at Δ({a,b}).
    assert narrow["mAP50-95"].low == pytest.approx(wide.point)
    assert narrow["mAP50-95"].high == pytest.approx(wide.point)


def test_the_bootstrap_is_reproducible_and_pairs_images_by_name():
    candidate = [image(f"{i}.jpg", [10, 0], [0]) for i in range(8)]
    production = [image(f"{i}.jpg", [3], [0]) for i in range(8)]

    first = paired_bootstrap(candidate, production, resamples=100, seed=7)
    assert paired_bootstrap(candidate, production, resamples=100, seed=7) == first
    assert paired_bootstrap(candidate, production[::-1], resamples=100, seed=7) == first
    with pytest.raises(ValueError, match="same held-out images"):
        paired_bootstrap(candidate, production[1:], resamples=10)
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap(candidate, production, resamples=0)
    with pytest.raises(ValueError, match="no held-out images"):
        paired_bootstrap([], [], resamples=10)


def test_scores_per_class_and_per_camera():
    # class 0: found tightly on cam-a, missed on cam-b; class 1 never labelled.
    candidate = [
        image("a1.jpg", [10], [0]),
        image("b1.jpg", [], [0, 0]),
    ]
    production = [image("a1.jpg", [10], [0]), image("b1.jpg", [], [0, 0])]

    scores = heldout_scores(candidate)
    assert scores.map50_95 == pytest.approx(1 / 3, abs=0.01)  # 1 of 3 boxes, precision 1
    rows = class_ap(candidate, production, ["Normal", "Fall"])
    assert [(r.group, r.n) for r in rows] == [("Normal", 3)]  # no AP without ground truth
    cameras = group_ap(candidate, production, lambda name: f"cam-{name[0]}")
    assert [(r.group, r.n, round(r.candidate, 3)) for r in cameras] == [
        ("cam-a", 1, 0.995),
        ("cam-b", 1, 0.0),
    ]


def test_aggregating_images_is_what_ultralytics_computes_on_the_concatenation():
    from ultralytics.utils.metrics import ap_per_class

    rng = np.random.default_rng(0)
    images = []
    for i in range(6):
        hits = rng.integers(0, 11, size=5).tolist()
        images.append(image(f"{i}.jpg", hits, [0] * 4, conf=rng.random(5).tolist()))
    ap = ap_per_class(
        np.concatenate([i.tp for i in images]),
        np.concatenate([i.conf for i in images]),
        np.concatenate([i.pred_cls for i in images]),
        np.concatenate([i.target_cls for i in images]),
    )[5]
    assert heldout_scores(images).map50_95 == pytest.approx(float(ap.mean()))
    assert heldout_scores(images).map50 == pytest.approx(float(ap[:, 0].mean()))


def test_no_images_is_an_error():
    with pytest.raises(ValueError, match="no held-out images"):
        heldout_scores([])
