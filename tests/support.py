"""Helpers shared by tests (importable as `support`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from edgeloop.annotations import ReviewedBox
    from edgeloop.datasets import LabeledFrame
    from edgeloop.store import Connection
    from edgeloop.store.verdicts import Verdict, VerdictRow
    from edgeloop.vectors import CropPoint

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "data" / "samples"
SEED_PT = REPO_ROOT / "data" / "seed" / "best.pt"


def require(path: Path) -> Path:
    """Skip (saying the fix) when `make data` has not fetched a file yet."""
    if not path.exists():
        pytest.skip(f"{path} missing: run `make data`")
    return path


def labeled_frames(tmp_path: Path, count: int) -> list[LabeledFrame]:
    """``count`` labeled frames of the sample video (``cam-a:<i>``, JPEGs written under
    ``tmp_path/frames``): every fourth a negative (no box), the others one ``Normal`` box."""
    import cv2

    from edgeloop.annotations import ReviewedBox
    from edgeloop.datasets import LabeledFrame

    cap = cv2.VideoCapture(str(require(SAMPLES_DIR / "vtest.avi")))
    frames = []
    for i in range(count):
        ok, image = cap.read()
        assert ok
        path = tmp_path / "frames" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        box = ReviewedBox(bbox_xyxy=[100, 100, 200, 400], class_id=0, class_name="Normal")
        frames.append(
            LabeledFrame(
                frame_key=f"cam-a:{i}",
                camera_id="cam-a",
                jpeg_path=path,
                width=768,
                height=576,
                boxes=[] if i % 4 == 0 else [box],
                labeled_at_iso=f"2025-06-01T12:00:{i:02d}.000000Z",
                label_id=i + 1,
            )
        )
    cap.release()
    return frames


DATASET_CHECKS = frozenset(
    {"boxes_inside_images", "known_classes", "no_train_val_leak", "minimum_size"}
)
"""The blocking asset checks on ``training_dataset`` (``pipelines/checks.py``)."""


def run_python(code: str, *, env: dict[str, str] | None = None) -> str:
    """Run ``python -c code`` in a fresh interpreter from the repository root; its stdout.

    Fails the test (with the tail of stderr) when the interpreter exits non-zero.
    """
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def crop_points(n: int, seed: int, dims: int = 64, camera_every: int = 2) -> list[CropPoint]:
    """``n`` crop-index points with unit random vectors (seeded), on cameras ``cam-a`` and
    ``cam-b`` (every ``camera_every``-th point on ``cam-b``); detection ids ``s<seed>-d<i>``."""
    import numpy as np

    from edgeloop.vectors import CropPoint

    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        CropPoint(
            detection_id=f"s{seed}-d{i}",
            frame_key=f"cam:{seed}:{i // 3}",
            camera_id="cam-a" if i % camera_every else "cam-b",
            class_name="Normal",
            confidence=0.55,
            bbox_xyxy=(1.0, 2.0, 30.0, 40.0),
            captured_at_iso="2025-06-01T12:00:00Z",
            vector=vectors[i],
        )
        for i in range(n)
    ]


def frame_row(key: str, camera_id: str, captured_at: object, **fields: object) -> dict[str, object]:
    """One ``frames`` row (``edgeloop.store.batches.FRAME_SCHEMA``) for
    ``tables_from_rows``: a 640x480 frame of agent ``a``, model ``1``, no detections and no
    JPEG, received when captured; ``fields`` override any column."""
    return {
        "frame_key": key,
        "camera_id": camera_id,
        "frame_index": 0,
        "captured_at": captured_at,
        "received_at": captured_at,
        "width": 640,
        "height": 480,
        "brightness": 1.0,
        "contrast": 1.0,
        "sharpness": 1.0,
        "saturation": 1.0,
        "detection_count": 0,
        "mean_confidence": None,
        "inference_ms": 20.0,
        "model_version": "1",
        "agent_id": "a",
        "jpeg_path": None,
    } | fields


def label_frame(
    con: Connection,
    frame_key: str,
    boxes: list[ReviewedBox],
    *,
    labeler: str,
    labeled_at: datetime,
) -> int:
    """Label ``frame_key`` (camera: the key's prefix, ``cam-a`` of ``cam-a:3``) with
    ``boxes`` as ``labeler``, queueing the frame first as ingest would; the new
    ``label_id``."""
    from edgeloop.store import labels, queue

    camera_id = frame_key.split(":")[0]
    item = queue.ensure_item(con=con, frame_key=frame_key, camera_id=camera_id, now=labeled_at)
    return labels.create(
        con=con,
        item_id=item,
        frame_key=frame_key,
        camera_id=camera_id,
        boxes=boxes,
        labeler=labeler,
        labeled_at=labeled_at,
    )


def verdict_row(
    target_id: str,
    class_name: str | None,
    verdict: Verdict,
    *,
    reviewed_at: datetime,
    audit: bool = True,
    corrected_class: str | None = None,
) -> VerdictRow:
    """A grid review verdict by ``ann`` for ``verdicts.record``: on the detection
    ``target_id`` (``<frame_key>:<k>``, the model's ``class_name`` at confidence 0.9), or on
    the frame ``target_id`` when ``class_name`` is None; camera: the frame key's prefix.
    ``corrected_class``: the class a ``wrong_class`` verdict gives."""
    from edgeloop.store.verdicts import VerdictRow

    on_frame = class_name is None
    frame_key = target_id if on_frame else target_id.rsplit(":", 1)[0]
    return VerdictRow(
        target_kind="frame" if on_frame else "detection",
        target_id=target_id,
        frame_key=frame_key,
        camera_id=frame_key.split(":")[0],
        class_name=class_name,
        confidence=None if on_frame else 0.9,
        verdict=verdict,
        corrected_class=corrected_class,
        audit=audit,
        reviewer="ann",
        reviewed_at=reviewed_at,
        label_id=None,
    )
