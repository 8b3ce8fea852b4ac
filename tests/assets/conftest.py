"""Fixtures for the training-side asset tests: a real MLflow sqlite store per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from assets.resources import LoopSettingsResource, MlflowResource, StoreResource
from edgeloop.settings import LoopSettings


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store with its schema migrated (migrations take seconds;
    each test gets a copy)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    before = os.environ.get("MLFLOW_TRACKING_URI")
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return path


@pytest.fixture
def loop(
    tmp_path: Path, mlflow_template_db: Path
) -> Iterator[tuple[LoopSettings, dict[str, object]]]:
    """Settings and resources on a fresh data folder with an empty MLflow store."""
    loop_resource = LoopSettingsResource(data_dir=str(tmp_path / "loop"))
    settings = loop_resource.settings()
    settings.mlflow_dir.mkdir(parents=True)
    shutil.copyfile(mlflow_template_db, settings.mlflow_dir / "mlflow.db")
    resources = {
        "mlflow": MlflowResource(loop=loop_resource),
        "store": StoreResource(loop=loop_resource),
    }
    yield settings, resources
