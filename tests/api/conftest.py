"""Fixtures of the API tests: an app on the test's own data dir (from tests/conftest.py).

The TestClient fixtures swap the MLflow registry for a stub without a production model
(``NoModelRegistry``): a fresh MLflow sqlite store takes seconds to create, and only
``test_api_models.py`` needs a real one (it builds it). Everything else is real: the
DuckDB file, JPEG files, Arrow inserts.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The test modules' folder is put on sys.path only when they are imported, after this
# conftest: make api_support importable here too.
sys.path.insert(0, str(Path(__file__).parent))

from api_support import TOKENS, LiveServer, NoModelRegistry, start_test_api
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.deps import get_registry
from api.main import create_app
from api.settings import ApiSettings
from edgeloop.cli.services import free_port
from edgeloop.settings import LoopSettings
from edgeloop.store import AnyStore


@pytest.fixture
def api_settings(loop_settings: LoopSettings) -> ApiSettings:
    return ApiSettings(
        loop=loop_settings,
        tokens=TOKENS,  # type: ignore[arg-type]
        warm_registry=False,
        dagster_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        dagster_timeout_s=5,
    )


@pytest.fixture
def app(api_settings: ApiSettings) -> FastAPI:
    application = create_app(api_settings)
    application.dependency_overrides[get_registry] = NoModelRegistry
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def store(loop_settings: LoopSettings) -> AnyStore:
    """The store the app uses: the same DuckDB file (same process: DuckDB shares the open
    database), or the same PostgreSQL database."""
    return loop_settings.store()


@pytest.fixture
def live_server(loop_settings: LoopSettings) -> Iterator[LiveServer]:
    """uvicorn in a subprocess (own process group) on a free port; stopped with SIGTERM."""
    with start_test_api(loop_settings, warm_registry=False) as service:
        yield LiveServer(
            base_url=service.url, data_dir=loop_settings.data_dir, process=service.process
        )
