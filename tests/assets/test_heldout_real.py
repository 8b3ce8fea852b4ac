"""``assets.heldout`` and ``assets.yolo``'s per-image evaluation on real frames with the
real seed detector: the per-image matches add up to ultralytics' own val numbers, and a
1000-resample paired bootstrap stays cheap.

The dataset: 16 vtest.avi frames labeled with the seed's boxes at 1280 px (conf >= 0.5),
a stricter reference than the seed at 640 px, so the scores are not trivially perfect.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from loopdata import seed_labeled_dataset
from support import SEED_PT, require

from assets.heldout import class_ap, heldout_scores, paired_bootstrap
from assets.yolo import predict_deployed, validate_per_image
from edgeloop.offline import configure_offline_environment, quiet_ultralytics

pytestmark = pytest.mark.integration
FRAMES = 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configure_offline_environment(tmp_path_factory.mktemp("ultralytics"))
    quiet_ultralytics()
    root = tmp_path_factory.mktemp("heldout") / "yolo"
    return seed_labeled_dataset(root, count=FRAMES, step=45, odd_to_train=False)


def _validate(dataset: Path, imgsz: int, tmp_path: Path):
    from ultralytics import YOLO

    return validate_per_image(
        YOLO,
        require(SEED_PT),
        dataset / "data.yaml",
        imgsz=imgsz,
        batch=4,
        save_dir=tmp_path / f"val-{imgsz}",
    )


def test_per_image_matches_add_up_to_ultralytics_val(dataset: Path, tmp_path: Path):
    val, matches = _validate(dataset, 640, tmp_path)

    assert sorted(m.name for m in matches) == sorted(
        p.name for p in (dataset / "images" / "val").iterdir()
    )
    ours = heldout_scores(matches)
    print(f"\nval {val}\nper-image aggregate {ours}")
    for name, value in ours.as_dict().items():
        assert value == pytest.approx(val.as_dict()[name], abs=1e-9), name
    assert 0.3 < val.map50_95 < 0.95  # a real, imperfect score
    per_class = class_ap(matches, matches, ["Normal", "Fall"])
    assert per_class[0].group == "Normal" and per_class[0].n > FRAMES
    mean = sum(row.candidate for row in per_class) / len(per_class)
    assert mean == pytest.approx(val.map50_95)  # mAP: the mean over labelled classes


def test_a_thousand_resample_bootstrap_is_cheap(dataset: Path, tmp_path: Path):
    _, at_640 = _validate(dataset, 640, tmp_path)
    _, at_480 = _validate(dataset, 480, tmp_path)

    t0 = time.perf_counter()
    gains = paired_bootstrap(at_640, at_480, resamples=1000, seed=0)
    elapsed = time.perf_counter() - t0

    print(
        f"\nB=1000 on {FRAMES} images: {elapsed:.2f} s; "
        + "; ".join(g.label() for g in gains.values())
    )
    assert elapsed < 60
    for gain in gains.values():
        assert gain.low <= gain.point <= gain.high and gain.n == FRAMES


def test_deployed_detections_are_in_frame_pixels_above_the_threshold(dataset: Path):
    from ultralytics import YOLO

    images = sorted((dataset / "images" / "val").glob("*.jpg"))[:3]
    detections = predict_deployed(YOLO, require(SEED_PT), images, imgsz=640, conf=0.25, iou=0.45)

    assert [d.name for d in detections] == [p.name for p in images]
    for d in detections:
        assert (d.width, d.height) == (768, 576)
        assert len(d.xyxy) == len(d.confidence) == len(d.class_names) > 0
        assert (d.confidence >= 0.25).all()
        assert (d.xyxy[:, [0, 2]] <= 768).all() and (d.xyxy[:, [1, 3]] <= 576).all()
        assert set(d.class_names) <= {"Normal", "Fall"}
