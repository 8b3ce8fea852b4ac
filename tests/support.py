"""Helpers shared by tests (importable as `support`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import subprocess
import sys
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
