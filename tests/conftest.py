"""Shared test fixtures: real media locations and an isolated data folder per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import SAMPLES_DIR, SEED_PT, require

from edgeloop.settings import LoopSettings, get_settings


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own EDGELOOP_DATA_DIR; the repo's data/ is never written."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("EDGELOOP_DATA_DIR", str(data_dir))
    monkeypatch.delenv("EDGELOOP_DB_PATH", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # Tokens come from the test's own data dir (or the test's EDGELOOP_API_TOKENS), never
    # from the developer's shell.
    monkeypatch.delenv("EDGELOOP_API_TOKENS", raising=False)
    monkeypatch.delenv("EDGELOOP_API_TOKENS_FILE", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster"))
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


@pytest.fixture
def loop_settings(isolated_data_dir: Path) -> LoopSettings:
    """Loop settings on the test's own data folder."""
    return LoopSettings(data_dir=isolated_data_dir)


@pytest.fixture
def samples_dir() -> Path:
    return require(SAMPLES_DIR / "vtest.avi").parent


@pytest.fixture
def seed_pt() -> Path:
    return require(SEED_PT)
