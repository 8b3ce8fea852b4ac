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

from api_support import LiveServer, api_settings_for, app_without_registry, start_test_api
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.settings import ApiSettings
from edgeloop.settings import LoopSettings
from edgeloop.store import AnyStore


@pytest.fixture
def api_settings(loop_settings: LoopSettings) -> ApiSettings:
    return api_settings_for(loop_settings)


@pytest.fixture
def app(api_settings: ApiSettings) -> FastAPI:
    return app_without_registry(api_settings)


@pytest.fixture
def gate_agent(loop_settings: LoopSettings, tmp_path: Path) -> Iterator[tuple[TestClient, dict]]:
    """A client of an app whose tokens file holds one token, an agent's limited to camera
    ``cam-1``, and that token's headers."""
    from edgeloop.tokens import create_token

    tokens_file = tmp_path / "api-tokens.json"
    token = create_token(tokens_file, name="gate-agent", role="agent", cameras=["cam-1"])
    settings = ApiSettings(loop=loop_settings, tokens_file=tokens_file, warm_registry=False)
    with TestClient(app_without_registry(settings)) as scoped:
        yield scoped, {"Authorization": f"Bearer {token}"}


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
