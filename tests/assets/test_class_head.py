"""``assets.class_head`` on the real seed model: production scored through a head over the
site's current classes predicts what production predicts on the classes it has, under
their current names, and never a class it lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from loopdata import vtest_frames

from assets.class_head import new_classes, production_in_classes
from assets.yolo import load_yolo
from edgeloop.settings import LoopSettings


def _predict(yolo, pt: Path, image: np.ndarray) -> list[tuple[str, float, list[float]]]:
    result = yolo(str(pt)).predict(image, imgsz=320, conf=0.05, verbose=False, device="cpu")[0]
    return [
        (result.names[int(c)], round(float(p), 3), [round(v) for v in box])
        for c, p, box in zip(
            result.boxes.cls.tolist(),
            result.boxes.conf.tolist(),
            result.boxes.xyxy.tolist(),
            strict=True,
        )
    ]


def test_production_through_the_sites_classes(seed_pt: Path, tmp_path: Path) -> None:
    yolo = load_yolo(LoopSettings(data_dir=tmp_path / "data"))
    class_map = {"Normal": "walking", "walking": "walking", "Fall": "Fall", "forklift": "forklift"}
    classes = ["forklift", "walking", "Fall"]  # a new class first: every index moves
    same = production_in_classes(yolo, seed_pt, ["Normal", "Fall"], {}, out=tmp_path / "unused.pt")
    assert same == seed_pt and not (tmp_path / "unused.pt").exists()
    remapped = production_in_classes(yolo, seed_pt, classes, class_map, out=tmp_path / "p.pt")
    assert remapped == tmp_path / "p.pt"
    assert new_classes(["Normal", "Fall"], classes, class_map) == ["forklift"]

    image = vtest_frames(1)[0]
    before = _predict(yolo, seed_pt, image)
    after = _predict(yolo, remapped, image)
    assert before, "the seed model finds people on vtest"
    renamed = [({"Normal": "walking"}.get(n, n), c, b) for n, c, b in before]
    assert sorted(after) == sorted(renamed)
    assert all(n != "forklift" for n, _, _ in after)
