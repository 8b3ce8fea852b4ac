"""Helpers shared by tests (importable as `support`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from edgeloop.vectors import CropPoint

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "data" / "samples"
SEED_PT = REPO_ROOT / "data" / "seed" / "best.pt"


def require(path: Path) -> Path:
    """Skip (saying the fix) when `make data` has not fetched a file yet."""
    if not path.exists():
        pytest.skip(f"{path} missing: run `make data`")
    return path


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
