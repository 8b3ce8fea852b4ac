"""Helpers shared by tests (importable as `support`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
