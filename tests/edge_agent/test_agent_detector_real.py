"""OnnxDetector with the real seed model on real photos, checked against ultralytics itself."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from support import SAMPLES_DIR, require

from edge_agent.capture import open_source
from edge_agent.detectors import ModelError, OnnxDetector, yolo_candidates

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def detector(seed_onnx: Path) -> OnnxDetector:
    return OnnxDetector(seed_onnx, conf_threshold=0.25, iou_threshold=0.45)


def test_finds_people_on_bus_jpg_inside_the_image(detector: OnnxDetector) -> None:
    image = cv2.imread(str(require(SAMPLES_DIR / "bus.jpg")))
    h, w = image.shape[:2]
    detections, times = detector.detect_timed(image)
    people = [d for d in detections if d.class_name == "Normal"]
    assert len(people) >= 2
    for d in detections:
        x1, y1, x2, y2 = d.bbox_xyxy
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert (x2 - x1) * (y2 - y1) > 1000  # a person, not a speck
        assert d.uncertain == (0.4 < d.confidence < 0.7)
    assert detector.class_names == ["Normal", "Fall"]  # read from the ONNX metadata
    assert detector.version.startswith("local-")
    assert times.inference_ms > 0 and times.preprocess_ms > 0


def test_matches_ultralytics_predict_on_the_same_onnx(
    detector: OnnxDetector, seed_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Same letterbox, decode, NMS and scaling as ultralytics' own predictor (torch NMS)."""
    from edgeloop.offline import configure_offline_environment

    configure_offline_environment(tmp_path_factory.mktemp("ultralytics"))
    from ultralytics import YOLO

    model = YOLO(str(seed_onnx), task="detect")
    for name in ("bus.jpg", "zidane.jpg"):
        image = cv2.imread(str(require(SAMPLES_DIR / name)))
        ours = detector.detect(image)
        [result] = model.predict(image, conf=0.25, iou=0.45, imgsz=640, verbose=False)
        theirs = result.boxes
        assert len(ours) == len(theirs), name
        order = np.argsort(-theirs.conf.numpy())
        np.testing.assert_allclose(
            [d.bbox_xyxy for d in ours], theirs.xyxy.numpy()[order], atol=1.0, err_msg=name
        )
        np.testing.assert_allclose(
            [d.confidence for d in ours], theirs.conf.numpy()[order], atol=1e-3
        )
        assert [d.class_id for d in ours] == theirs.cls.numpy()[order].astype(int).tolist()


VTEST_FRAMES = range(0, 795, 50)
"""16 frames spread over vtest.avi's 795 (people walking in a square: many overlapping boxes)."""


@pytest.mark.parametrize(("conf_threshold", "max_detections"), [(0.25, 300), (0.001, 30)])
def test_nms_keeps_what_torchvision_batched_nms_keeps_on_vtest(
    seed_onnx: Path, conf_threshold: float, max_detections: int
) -> None:
    """OpenCV's NMSBoxesBatched in the detector = torchvision.ops.batched_nms (ultralytics' NMS).

    Both run on the same decoded candidates of the real model on real frames; at
    conf 0.001 (ultralytics' val setting) thousands of overlapping candidates meet NMS and
    ``max_detections`` cuts the kept list.
    """
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    detector = OnnxDetector(
        seed_onnx,
        conf_threshold=conf_threshold,
        iou_threshold=0.45,
        max_detections=max_detections,
    )
    with open_source(require(SAMPLES_DIR / "vtest.avi")) as source:
        images = [f.image for f in source if f.frame_index in VTEST_FRAMES]
    assert len(images) == len(VTEST_FRAMES)
    candidates = kept = 0
    for i, image in zip(VTEST_FRAMES, images, strict=True):
        tensor, box = detector.preprocess(image)
        output = detector.inference(tensor)
        xyxy, conf, class_ids = yolo_candidates(output, conf_threshold=conf_threshold)
        keep = torchvision.ops.batched_nms(
            torch.from_numpy(xyxy), torch.from_numpy(conf), torch.from_numpy(class_ids), 0.45
        ).numpy()[:max_detections]
        ours = detector.postprocess(output, box)
        np.testing.assert_array_equal(
            [d.bbox_xyxy for d in ours],
            box.boxes_to_original(xyxy[keep]).reshape(-1, 4),
            err_msg=f"frame {i}",
        )
        assert [d.class_id for d in ours] == class_ids[keep].tolist(), f"frame {i}"
        assert [d.confidence for d in ours] == conf[keep].tolist(), f"frame {i}"
        candidates += len(xyxy)
        kept += len(ours)
    assert kept > 3 * len(images)  # people were found on every frame or so
    assert candidates > 2 * kept  # NMS had real work: most candidates were suppressed


def test_missing_and_corrupt_models_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nope\.onnx does not exist"):
        OnnxDetector(tmp_path / "nope.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07 half a protobuf")
    with pytest.raises(ModelError, match=r"cannot load ONNX model .*broken\.onnx"):
        OnnxDetector(broken)


def test_class_names_must_match_the_output(seed_onnx: Path) -> None:
    with pytest.raises(ModelError, match="outputs 2 classes but 3 class names"):
        OnnxDetector(seed_onnx, class_names=["a", "b", "c"])
